//! A bounded wait for something to become true, instead of sleeping.

use std::time::Duration;

/// How often [`eventually`] looks again.
const POLL: Duration = Duration::from_millis(10);

/// Waits until `condition` holds, looking every 10 ms, for at most
/// `timeout` (on the tokio clock, so it can be paused). Returns whether it
/// came true.
pub async fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_timeout_and_sees_a_condition_come_true() {
        assert!(!eventually(Duration::from_secs(1), || false).await);
        let mut calls = 0;
        assert!(
            eventually(Duration::from_secs(1), || {
                calls += 1;
                calls == 3
            })
            .await
        );
    }
}

//! Bounded waits that hold up under a paused tokio clock: for a condition
//! to become true ([`eventually`]) or a future to finish ([`within`]).

use std::time::Duration;

/// How often [`eventually`] looks again.
const POLL: Duration = Duration::from_millis(10);

/// Waits until `condition` holds, looking every 10 ms, and returns whether
/// it came true.
///
/// It gives up once `timeout` has passed on the tokio clock *and* on the
/// wall clock. With a paused tokio clock, virtual time leaps whenever the
/// runtime idles, while loopback I/O and the miners' hashing threads take
/// real time; the wall clock keeps the wait from ending before they had
/// their chance. Past the tokio deadline it polls off the runtime, so the
/// paused clock does not race ahead meanwhile.
pub async fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    let wall_deadline = wall_clock() + timeout;
    loop {
        if condition() {
            return true;
        }
        let virtual_over = tokio::time::Instant::now() >= deadline;
        if virtual_over && wall_clock() >= wall_deadline {
            return false;
        }
        if virtual_over {
            let _ = tokio::task::spawn_blocking(|| std::thread::sleep(POLL)).await;
        } else {
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Returns what `future` gives, or `None` once `timeout` has passed on the
/// tokio clock and on the wall clock (see [`eventually`] for why both).
pub async fn within<F: Future>(timeout: Duration, future: F) -> Option<F::Output> {
    let deadline = tokio::time::Instant::now() + timeout;
    let wall_deadline = wall_clock() + timeout;
    tokio::pin!(future);
    loop {
        let virtual_over = tokio::time::Instant::now() >= deadline;
        if virtual_over && wall_clock() >= wall_deadline {
            return None;
        }
        let tick = async {
            if virtual_over {
                let _ = tokio::task::spawn_blocking(|| std::thread::sleep(POLL)).await;
            } else {
                tokio::time::sleep_until(deadline).await;
            }
        };
        tokio::select! {
            out = &mut future => return Some(out),
            () = tick => {}
        }
    }
}

/// Returns the wall clock, which a paused tokio clock does not stop.
#[allow(clippy::disallowed_methods)]
fn wall_clock() -> std::time::Instant {
    std::time::Instant::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_timeout_and_sees_a_condition_come_true() {
        assert!(!eventually(Duration::from_millis(50), || false).await);
        let mut calls = 0;
        assert!(
            eventually(Duration::from_secs(1), || {
                calls += 1;
                calls == 3
            })
            .await
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_clock_does_not_cut_the_wait_short() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            let _ = tx.send(());
        });
        assert!(eventually(Duration::from_secs(10), || rx.try_recv().is_ok()).await);
    }

    #[tokio::test(start_paused = true)]
    async fn within_waits_for_real_work_and_gives_up_on_none() {
        let real = tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(50)));
        assert!(within(Duration::from_secs(10), real).await.is_some());
        let never = std::future::pending::<()>();
        assert_eq!(within(Duration::from_millis(30), never).await, None);
    }
}

//! Pool → proxy: `Incoming<ServerMethod>` (notify, set_difficulty,
//! set_extranonce, ...) and the typed results read from answers (subscribe,
//! configure, submit).

use hashsplit_stratum::{ConfigureResult, Incoming, ServerMethod, SubmitResult, SubscribeResult};

use crate::round_trip::check_line;

/// Parses one line as an upstream reads a pool's; an answer is also read
/// as each typed result, and whatever reads must write back the same.
pub fn run(data: &[u8]) {
    check_line::<ServerMethod>(data, |incoming| {
        let Incoming::Response(response) = incoming else {
            return;
        };
        if let Ok(subscribed) = SubscribeResult::from_result(&response.result) {
            let again = SubscribeResult::from_result(&subscribed.to_value());
            assert_eq!(again.as_ref(), Ok(&subscribed), "subscribe result");
        }
        if let Ok(configured) = ConfigureResult::from_result(&response.result) {
            let again = ConfigureResult::from_result(&configured.to_value());
            assert_eq!(again.as_ref(), Ok(&configured), "configure result");
        }
        if let Ok(verdict) = SubmitResult::from_response(response) {
            let again = SubmitResult::from_response(&verdict.to_response(response.id.clone()));
            assert_eq!(again.as_ref(), Ok(&verdict), "submit result");
        }
    });
}

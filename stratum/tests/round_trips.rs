//! Property tests: whatever this crate writes, it reads back to the same
//! value, and ids come back exactly as they went out.

use hashsplit_stratum::{
    ClientMethod, Difficulty, Id, Incoming, Method, Notify, Response, ServerMethod, Submit,
};
use proptest::prelude::*;

fn any_id() -> impl Strategy<Value = Id> {
    prop_oneof![
        any::<u64>().prop_map(Id::from),
        any::<i64>().prop_map(|n| Id::Number(n.into())),
        ".*".prop_map(Id::from),
        Just(Id::Null),
    ]
}

fn any_hash() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

fn any_notify() -> impl Strategy<Value = Notify> {
    (
        "[0-9a-zA-Z_-]{1,16}",
        any_hash(),
        proptest::collection::vec(any::<u8>(), 0..200),
        proptest::collection::vec(any::<u8>(), 0..200),
        proptest::collection::vec(any_hash(), 0..14),
        (any::<u32>(), any::<u32>(), any::<u32>(), any::<bool>()),
    )
        .prop_map(
            |(
                job_id,
                prevhash,
                coinb1,
                coinb2,
                merkle_branch,
                (version, nbits, ntime, clean_jobs),
            )| {
                Notify {
                    job_id,
                    prevhash,
                    coinb1,
                    coinb2,
                    merkle_branch,
                    version,
                    nbits,
                    ntime,
                    clean_jobs,
                }
            },
        )
}

fn any_submit() -> impl Strategy<Value = Submit> {
    // Any strings at all: submit fields are kept as sent, so even ones with
    // quotes, newlines or non-ASCII must survive.
    (".*", ".*", ".*", ".*", ".*", proptest::option::of(".*")).prop_map(
        |(worker, job_id, extranonce2, ntime, nonce, version_bits)| Submit {
            worker,
            job_id,
            extranonce2,
            ntime,
            nonce,
            version_bits,
        },
    )
}

proptest! {
    #[test]
    fn ids_come_back_in_the_response(id in any_id()) {
        let line = Response::ok(id.clone(), true).to_line();
        prop_assert!(!line.contains('\n'));
        match Incoming::<ClientMethod>::from_line(&line) {
            Ok(Incoming::Response(r)) => prop_assert_eq!(r.id, id),
            other => prop_assert!(false, "{line} read as {other:?}"),
        }
    }

    #[test]
    fn notify_round_trips(notify in any_notify(), id in any_id()) {
        let method = ServerMethod::Notify(notify);
        let line = method.to_line(id.clone());
        prop_assert!(!line.contains('\n'));
        prop_assert_eq!(
            Incoming::<ServerMethod>::from_line(&line),
            Ok(Incoming::Call { id, method })
        );
    }

    #[test]
    fn submit_round_trips(submit in any_submit(), id in any_id()) {
        let method = ClientMethod::Submit(submit);
        let line = method.to_line(id.clone());
        prop_assert!(!line.contains('\n'));
        prop_assert_eq!(
            Incoming::<ClientMethod>::from_line(&line),
            Ok(Incoming::Call { id, method })
        );
    }

    #[test]
    fn difficulty_round_trips_exactly(d in (1e-12f64..1e30)) {
        let method = ServerMethod::SetDifficulty(Difficulty::try_new(d).unwrap());
        let line = method.to_line(Id::Null);
        prop_assert_eq!(
            Incoming::<ServerMethod>::from_line(&line),
            Ok(Incoming::Call { id: Id::Null, method })
        );
    }
}

//! Lines that are truly broken, each rejected with the typed error that
//! names what was wrong, and with the id and method when they were readable
//! (a server answers those; a malformed submit still counts as a share).

use hashsplit_stratum::error::Field;
use hashsplit_stratum::{
    ClientMethod, Id, Incoming, Message, ParseErrorKind, ServerMethod, SubscribeResult,
};
use serde_json::json;

/// Lines that are truly broken, with the error that must name the problem.
#[test]
fn malformed_lines() {
    let param = |index, name| Field::Param { index, name };
    let miner_cases: Vec<(&str, Option<Id>, Option<&str>, ParseErrorKind)> = vec![
        (
            r#"{"id":4,"method":"mining.submit","params":["w","j","00","5b9f6b3e"]}"#,
            Some(Id::from(4)),
            Some("mining.submit"),
            ParseErrorKind::ParamCount {
                expected: "5 or 6",
                got: 4,
            },
        ),
        (
            r#"{"id":4,"method":"mining.submit","params":["w","j","00","5b9f6b3e",3735928559]}"#,
            Some(Id::from(4)),
            Some("mining.submit"),
            ParseErrorKind::WrongType {
                field: param(4, "nonce"),
                expected: "a string",
                value: "3735928559".into(),
            },
        ),
        (
            r#"{"id":2,"method":"mining.authorize","params":[42,"x"]}"#,
            Some(Id::from(2)),
            Some("mining.authorize"),
            ParseErrorKind::WrongType {
                field: param(0, "user"),
                expected: "a string",
                value: "42".into(),
            },
        ),
        (
            r#"{"id":1,"method":"mining.configure","params":["version-rolling",{}]}"#,
            Some(Id::from(1)),
            Some("mining.configure"),
            ParseErrorKind::WrongType {
                field: param(0, "extensions"),
                expected: "a list of strings",
                value: "\"version-rolling\"".into(),
            },
        ),
        (
            r#"{"id":3,"method":"mining.suggest_difficulty","params":[-1]}"#,
            Some(Id::from(3)),
            Some("mining.suggest_difficulty"),
            ParseErrorKind::OutOfRange {
                field: param(0, "difficulty"),
                value: "-1".into(),
            },
        ),
        (
            r#"{"id":9,"method":"mining.ping","params":[]}"#,
            Some(Id::from(9)),
            Some("mining.ping"),
            ParseErrorKind::UnknownMethod("mining.ping".into()),
        ),
        (
            r#"{"id":{"n":1},"method":"mining.subscribe","params":[]}"#,
            None,
            // The method is kept, so a submit with such an id is counted.
            Some("mining.subscribe"),
            ParseErrorKind::BadId(r#"{"n":1}"#.into()),
        ),
        (
            r#"["mining.subscribe"]"#,
            None,
            None,
            ParseErrorKind::NotAnObject(r#"["mining.subscribe"]"#.into()),
        ),
        (
            r#"{"id":5}"#,
            Some(Id::from(5)),
            None,
            ParseErrorKind::NotAMessage(r#"{"id":5}"#.into()),
        ),
    ];
    for (line, id, method, kind) in miner_cases {
        let err = Incoming::<ClientMethod>::from_line(line).unwrap_err();
        assert_eq!(err.kind(), &kind, "{line}");
        assert_eq!(err.id(), id.as_ref(), "{line}");
        assert_eq!(err.method(), method, "{line}");
    }

    let mut short_prevhash = json!([
        "bf",
        "4d16",
        "00",
        "00",
        [],
        "00000002",
        "1c2ac4af",
        "504e86b9",
        true
    ]);
    let pool_cases = [
        (
            json!({"id": null, "method": "mining.notify", "params": short_prevhash.clone()}),
            ParseErrorKind::WrongLength {
                field: param(1, "prevhash"),
                expected: 32,
                got: 2,
                value: "\"4d16\"".into(),
            },
        ),
        (
            {
                short_prevhash[1] =
                    json!("4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000");
                short_prevhash[6] = json!("1c2ac4a");
                json!({"id": null, "method": "mining.notify", "params": short_prevhash})
            },
            ParseErrorKind::BadHex {
                field: param(6, "nbits"),
                value: "\"1c2ac4a\"".into(),
            },
        ),
        (
            json!({"id": null, "method": "mining.set_difficulty", "params": [0]}),
            ParseErrorKind::OutOfRange {
                field: param(0, "difficulty"),
                value: "0".into(),
            },
        ),
        (
            json!({"id": null, "method": "mining.set_difficulty", "params": ["high"]}),
            ParseErrorKind::WrongType {
                field: param(0, "difficulty"),
                expected: "a number",
                value: "\"high\"".into(),
            },
        ),
        (
            json!({"id": 1, "result": null, "error": ["x"]}),
            ParseErrorKind::BadErrorField("[\"x\"]".into()),
        ),
    ];
    for (line, kind) in pool_cases {
        let line = line.to_string();
        let err = Incoming::<ServerMethod>::from_line(&line).unwrap_err();
        assert_eq!(err.kind(), &kind, "{line}");
    }

    let err = Message::from_line("mining.subscribe\r").unwrap_err();
    assert!(
        matches!(err.kind(), ParseErrorKind::NotJson { .. }),
        "{err}"
    );
    assert!(matches!(
        SubscribeResult::from_result(&json!([[], "08zz", 4])),
        Err(ParseErrorKind::BadHex {
            field: Field::Result("extranonce1"),
            ..
        })
    ));
}

//! Lines as real miners and pools send them (cgminer, bmminer, cpuminer,
//! Braiins OS, ckpool, slush's reference docs, BIP-0310), each read into the
//! typed message it means; then written back by this crate and read again to
//! the same value. Truly malformed lines are in `malformed_lines.rs`.

use hashsplit_stratum::{
    ClientMethod, Configure, ConfigureResult, Difficulty, Id, Incoming, Method, Notify, Response,
    ServerMethod, StratumError, Submit, SubmitResult, SubscribeResult, VersionRolling,
};
use serde_json::{Value, json};

fn diff(d: f64) -> Difficulty {
    Difficulty::try_new(d).unwrap()
}

fn submit(
    worker: &str,
    job: &str,
    en2: &str,
    ntime: &str,
    nonce: &str,
    vb: Option<&str>,
) -> ClientMethod {
    ClientMethod::Submit(Submit {
        worker: worker.into(),
        job_id: job.into(),
        extranonce2: en2.into(),
        ntime: ntime.into(),
        nonce: nonce.into(),
        version_bits: vb.map(Into::into),
    })
}

fn subscribe(user_agent: Option<&str>, session_id: Option<&str>) -> ClientMethod {
    ClientMethod::Subscribe {
        user_agent: user_agent.map(Into::into),
        session_id: session_id.map(Into::into),
    }
}

fn configure(extensions: &[&str], rolling: Option<(u32, u32)>, other: Value) -> ClientMethod {
    let Value::Object(other_params) = other else {
        panic!("other params are an object")
    };
    ClientMethod::Configure(Configure {
        extensions: extensions.iter().map(|e| e.to_string()).collect(),
        version_rolling: rolling.map(|(mask, min_bit_count)| VersionRolling {
            mask,
            min_bit_count,
        }),
        other_params,
    })
}

/// Reads `line` as side `M`, checks it means `id` + `method`, then writes it
/// back and checks that reads the same.
fn check_call<M: Method + PartialEq + std::fmt::Debug>(
    source: &str,
    line: &str,
    id: Id,
    method: M,
) {
    let expected = Incoming::Call { id, method };
    let parsed = Incoming::<M>::from_line(line);
    assert_eq!(parsed.as_ref(), Ok(&expected), "{source}: {line}");
    let Incoming::Call { id, method } = expected else {
        unreachable!()
    };
    let written = method.to_line(id.clone());
    assert_eq!(
        Incoming::<M>::from_line(&written),
        Ok(Incoming::Call { id, method }),
        "{source}: written back as {written}"
    );
}

#[test]
fn miner_calls() {
    let cases: Vec<(&str, &str, Id, ClientMethod)> = vec![
        (
            "cgminer subscribe",
            r#"{"id": 0, "method": "mining.subscribe", "params": ["cgminer/4.10.0"]}"#,
            Id::from(0),
            subscribe(Some("cgminer/4.10.0"), None),
        ),
        (
            "cgminer subscribe resuming a session",
            r#"{"id": 0, "method": "mining.subscribe", "params": ["cgminer/4.9.2", "e26e1928"]}"#,
            Id::from(0),
            subscribe(Some("cgminer/4.9.2"), Some("e26e1928")),
        ),
        (
            "bmminer subscribe",
            r#"{"id":1,"method":"mining.subscribe","params":["bmminer/2.0.0"]}"#,
            Id::from(1),
            subscribe(Some("bmminer/2.0.0"), None),
        ),
        (
            "cpuminer subscribe",
            r#"{"id": 1, "method": "mining.subscribe", "params": ["cpuminer/2.5.1"]}"#,
            Id::from(1),
            subscribe(Some("cpuminer/2.5.1"), None),
        ),
        (
            "subscribe without params",
            r#"{"id": 1, "method": "mining.subscribe", "params": []}"#,
            Id::from(1),
            subscribe(None, None),
        ),
        (
            "subscribe with null session, host and port",
            r#"{"id":1,"method":"mining.subscribe","params":["NiceHash/1.0.0",null,"stratum.example.com","3333"]}"#,
            Id::from(1),
            subscribe(Some("NiceHash/1.0.0"), None),
        ),
        (
            "subscribe with a string id and JSON-RPC 2.0 marker",
            r#"{"jsonrpc":"2.0","id":"s1","method":"mining.subscribe","params":["bosminer-plus-tuner 0.2.0"]}"#,
            Id::from("s1"),
            subscribe(Some("bosminer-plus-tuner 0.2.0"), None),
        ),
        (
            "authorize with password",
            r#"{"id": 2, "method": "mining.authorize", "params": ["slush.miner1", "password"]}"#,
            Id::from(2),
            ClientMethod::Authorize {
                user: "slush.miner1".into(),
                password: Some("password".into()),
            },
        ),
        (
            "authorize without password",
            r#"{"params":["bc1qexample.rig7"],"id":2,"method":"mining.authorize"}"#,
            Id::from(2),
            ClientMethod::Authorize {
                user: "bc1qexample.rig7".into(),
                password: None,
            },
        ),
        (
            "authorize with null password",
            r#"{"id":2,"method":"mining.authorize","params":["acct.1",null]}"#,
            Id::from(2),
            ClientMethod::Authorize {
                user: "acct.1".into(),
                password: None,
            },
        ),
        (
            "cgminer submit",
            r#"{"params": ["slush.miner1", "bf", "00000001", "504e86ed", "b2957c02"], "id": 4, "method": "mining.submit"}"#,
            Id::from(4),
            submit(
                "slush.miner1",
                "bf",
                "00000001",
                "504e86ed",
                "b2957c02",
                None,
            ),
        ),
        (
            "cpuminer submit, id 4 as always",
            r#"{"method": "mining.submit", "params": ["cpu1", "1f", "00000000", "5b9f6b3e", "0a5b3c2d"], "id":4}"#,
            Id::from(4),
            submit("cpu1", "1f", "00000000", "5b9f6b3e", "0a5b3c2d", None),
        ),
        (
            "cpuminer's next submit, id 4 again",
            r#"{"method": "mining.submit", "params": ["cpu1", "1f", "00000000", "5b9f6b3e", "d00dfeed"], "id":4}"#,
            Id::from(4),
            submit("cpu1", "1f", "00000000", "5b9f6b3e", "d00dfeed", None),
        ),
        (
            "bmminer submit with version bits",
            r#"{"params": ["acct.s9", "5e8", "0000000000000000", "5ff63f3e", "1c7b29d8", "00a0e000"], "id": 1234, "method": "mining.submit"}"#,
            Id::from(1234),
            submit(
                "acct.s9",
                "5e8",
                "0000000000000000",
                "5ff63f3e",
                "1c7b29d8",
                Some("00a0e000"),
            ),
        ),
        (
            "submit with upper-case hex kept as sent",
            r#"{"id":"x9","method":"mining.submit","params":["w","J1","00FF","5FF63F3E","1C7B29D8",null]}"#,
            Id::from("x9"),
            submit("w", "J1", "00FF", "5FF63F3E", "1C7B29D8", None),
        ),
        (
            "BIP-0310 configure",
            r#"{"method": "mining.configure", "id": 1, "params": [["minimum-difficulty", "version-rolling"], {"minimum-difficulty.value": 2048, "version-rolling.mask": "1fffe000", "version-rolling.min-bit-count": 2}]}"#,
            Id::from(1),
            configure(
                &["minimum-difficulty", "version-rolling"],
                Some((0x1fff_e000, 2)),
                json!({"minimum-difficulty.value": 2048}),
            ),
        ),
        (
            "Antminer configure",
            r#"{"id":1,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"1fffe000","version-rolling.min-bit-count":2}]}"#,
            Id::from(1),
            configure(&["version-rolling"], Some((0x1fff_e000, 2)), json!({})),
        ),
        (
            "Braiins OS configure with every extension",
            r#"{"id":1,"method":"mining.configure","params":[["version-rolling","minimum-difficulty","subscribe-extranonce","info"],{"version-rolling.mask":"ffffffff","version-rolling.min-bit-count":16,"minimum-difficulty.value":1024,"info.connection-url":"stratum+tcp://proxy:3333","info.hw-version":"S19","info.hw-id":"a1b2"}]}"#,
            Id::from(1),
            configure(
                &[
                    "version-rolling",
                    "minimum-difficulty",
                    "subscribe-extranonce",
                    "info",
                ],
                Some((u32::MAX, 16)),
                json!({"minimum-difficulty.value": 1024, "info.connection-url": "stratum+tcp://proxy:3333", "info.hw-version": "S19", "info.hw-id": "a1b2"}),
            ),
        ),
        (
            "configure without min-bit-count",
            r#"{"id":3,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"1fffe000"}]}"#,
            Id::from(3),
            configure(&["version-rolling"], Some((0x1fff_e000, 0)), json!({})),
        ),
        (
            "extranonce subscribe",
            r#"{"id": 3, "method": "mining.extranonce.subscribe", "params": []}"#,
            Id::from(3),
            ClientMethod::ExtranonceSubscribe,
        ),
        (
            "suggest difficulty, integer",
            r#"{"id": 3, "method": "mining.suggest_difficulty", "params": [512]}"#,
            Id::from(3),
            ClientMethod::SuggestDifficulty(diff(512.0)),
        ),
        (
            "suggest difficulty, string",
            r#"{"id":5,"method":"mining.suggest_difficulty","params":["1024"]}"#,
            Id::from(5),
            ClientMethod::SuggestDifficulty(diff(1024.0)),
        ),
        (
            "suggest difficulty, fraction",
            r#"{"id":5,"method":"mining.suggest_difficulty","params":[0.01]}"#,
            Id::from(5),
            ClientMethod::SuggestDifficulty(diff(0.01)),
        ),
        (
            "get transactions",
            r#"{"params": ["bf"], "id": 7, "method": "mining.get_transactions"}"#,
            Id::from(7),
            ClientMethod::GetTransactions {
                job_id: Some("bf".into()),
            },
        ),
    ];
    for (source, line, id, method) in cases {
        check_call(source, line, id, method);
    }
}

fn slush_notify() -> Notify {
    Notify {
        job_id: "bf".into(),
        prevhash: hex::decode("4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000")
            .unwrap()
            .try_into()
            .unwrap(),
        coinb1: hex::decode("01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20020862062f503253482f04b8864e5008").unwrap(),
        coinb2: hex::decode("072f736c7573682f000000000100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000").unwrap(),
        merkle_branch: vec![],
        version: 2,
        nbits: 0x1c2a_c4af,
        ntime: 0x504e_86b9,
        clean_jobs: false,
    }
}

#[test]
fn pool_calls() {
    let cases: Vec<(&str, &str, Id, ServerMethod)> = vec![
        (
            "slush's reference notify",
            r#"{"params": ["bf", "4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000", "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20020862062f503253482f04b8864e5008", "072f736c7573682f000000000100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000", [], "00000002", "1c2ac4af", "504e86b9", false], "id": null, "method": "mining.notify"}"#,
            Id::Null,
            ServerMethod::Notify(slush_notify()),
        ),
        (
            "set_difficulty as integer",
            r#"{"id":null,"method":"mining.set_difficulty","params":[8192]}"#,
            Id::Null,
            ServerMethod::SetDifficulty(diff(8192.0)),
        ),
        (
            "set_difficulty as float",
            r#"{"params": [0.5], "id": null, "method": "mining.set_difficulty"}"#,
            Id::Null,
            ServerMethod::SetDifficulty(diff(0.5)),
        ),
        (
            "set_difficulty as whole float",
            r#"{"id":null,"method":"mining.set_difficulty","params":[65536.0]}"#,
            Id::Null,
            ServerMethod::SetDifficulty(diff(65536.0)),
        ),
        (
            "set_difficulty with an exponent",
            r#"{"id":null,"method":"mining.set_difficulty","params":[1.6384e4]}"#,
            Id::Null,
            ServerMethod::SetDifficulty(diff(16384.0)),
        ),
        (
            "set_difficulty without an id member",
            r#"{"method":"mining.set_difficulty","params":[2e-3]}"#,
            Id::Null,
            ServerMethod::SetDifficulty(diff(0.002)),
        ),
        (
            "set_extranonce",
            r#"{"id":null,"method":"mining.set_extranonce","params":["0800002e",4]}"#,
            Id::Null,
            ServerMethod::SetExtranonce {
                extranonce1: vec![0x08, 0, 0, 0x2e],
                extranonce2_size: 4,
            },
        ),
        (
            "BIP-0310 set_version_mask",
            r#"{"params":["00003000"], "id":null, "method": "mining.set_version_mask"}"#,
            Id::Null,
            ServerMethod::SetVersionMask(0x3000),
        ),
        (
            "reconnect with host, port and wait",
            r#"{"id":null,"method":"client.reconnect","params":["eu.stratum.example",3333,0]}"#,
            Id::Null,
            ServerMethod::Reconnect {
                host: Some("eu.stratum.example".into()),
                port: Some(3333),
                wait_secs: Some(0),
            },
        ),
        (
            "reconnect with a string port",
            r#"{"id":null,"method":"client.reconnect","params":["us.stratum.example","3334"]}"#,
            Id::Null,
            ServerMethod::Reconnect {
                host: Some("us.stratum.example".into()),
                port: Some(3334),
                wait_secs: None,
            },
        ),
        (
            "reconnect to the same place",
            r#"{"id":null,"method":"client.reconnect","params":[]}"#,
            Id::Null,
            ServerMethod::Reconnect {
                host: None,
                port: None,
                wait_secs: None,
            },
        ),
        (
            "show_message",
            r#"{"id":null,"method":"client.show_message","params":["Pool maintenance in 10 minutes"]}"#,
            Id::Null,
            ServerMethod::ShowMessage("Pool maintenance in 10 minutes".into()),
        ),
        (
            "get_version, a request",
            r#"{"id":17,"method":"client.get_version","params":[]}"#,
            Id::from(17),
            ServerMethod::GetVersion,
        ),
    ];
    for (source, line, id, method) in cases {
        check_call(source, line, id, method);
    }
}

fn response(line: &str) -> Response {
    match Incoming::<ServerMethod>::from_line(line) {
        Ok(Incoming::Response(r)) => r,
        other => panic!("{line} is a response, got {other:?}"),
    }
}

#[test]
fn subscribe_results() {
    let nested = r#"{"id": 1, "result": [ [ ["mining.set_difficulty", "b4b6693b72a50c7116db18d6497cac52"], ["mining.notify", "ae6812eb4cd7735a302a8a9dd95cf71f"]], "08000002", 4], "error": null}"#;
    let flat = r#"{"id":1,"result":[["mining.notify","ae6812eb4cd7735a302a8a9dd95cf71f"],"08000002",4],"error":null}"#;
    let no_error_member = r#"{"id":1,"result":[[],"",8]}"#;
    let cases = [
        (nested, 2, vec![8, 0, 0, 2], 4),
        (flat, 1, vec![8, 0, 0, 2], 4),
        (no_error_member, 0, vec![], 8),
    ];
    for (line, subscriptions, extranonce1, extranonce2_size) in cases {
        let r = response(line);
        assert_eq!(r.error, None, "{line}");
        let result = SubscribeResult::from_result(&r.result).unwrap();
        assert_eq!(result.subscriptions.len(), subscriptions, "{line}");
        assert_eq!(result.extranonce1, extranonce1, "{line}");
        assert_eq!(result.extranonce2_size, extranonce2_size, "{line}");
        let written = Response::ok(r.id, result.clone()).to_line();
        let again = SubscribeResult::from_result(&response(&written).result).unwrap();
        assert_eq!(again, result, "{written}");
    }
}

#[test]
fn configure_results() {
    let cases = [
        (
            r#"{"error": null, "id": 1, "result": {"version-rolling": true, "version-rolling.mask": "18000000", "minimum-difficulty": true}}"#,
            Some(0x1800_0000),
            json!({"minimum-difficulty": true}),
        ),
        (
            r#"{"error": null, "id": 1, "result": {"version-rolling": false}}"#,
            None,
            json!({"version-rolling": false}),
        ),
        (
            r#"{"id":1,"result":{"version-rolling":true,"version-rolling.mask":"1fffe000","subscribe-extranonce":false,"info":false}}"#,
            Some(0x1fff_e000),
            json!({"subscribe-extranonce": false, "info": false}),
        ),
    ];
    for (line, granted, other) in cases {
        let result = ConfigureResult::from_result(&response(line).result).unwrap();
        assert_eq!(result.version_rolling, granted, "{line}");
        assert_eq!(Value::Object(result.other.clone()), other, "{line}");
        let written = Response::ok(Id::from(1), result.clone()).to_line();
        let again = ConfigureResult::from_result(&response(&written).result).unwrap();
        assert_eq!(again, result, "{written}");
    }
}

#[test]
fn submit_and_authorize_verdicts() {
    let cases = [
        (
            r#"{"error": null, "id": 2, "result": true}"#,
            SubmitResult::Accepted,
        ),
        (r#"{"id":2,"result":true}"#, SubmitResult::Accepted),
        (
            r#"{"jsonrpc":"2.0","id":4,"result":true}"#,
            SubmitResult::Accepted,
        ),
        (
            r#"{"id":4,"result":null,"error":null}"#,
            SubmitResult::Accepted,
        ),
        (
            r#"{"id":4,"result":null,"error":[23,"Low difficulty share",null]}"#,
            SubmitResult::Rejected(StratumError::low_difficulty()),
        ),
        (
            r#"{"id":4,"result":false,"error":[21,"Job not found",""]}"#,
            SubmitResult::Rejected(StratumError::stale()),
        ),
        (
            r#"{"id":4,"result":null,"error":{"code":22,"message":"Duplicate share"}}"#,
            SubmitResult::Rejected(StratumError::duplicate()),
        ),
        (
            r#"{"id":4,"result":false,"error":"Invalid job id"}"#,
            SubmitResult::Rejected(StratumError::other("Invalid job id")),
        ),
        (
            r#"{"id":4,"result":false,"error":null,"reject-reason":"Stale"}"#,
            SubmitResult::Rejected(StratumError::other("Stale")),
        ),
        (
            r#"{"id":2,"result":null,"error":[24,"Unauthorized worker",null]}"#,
            SubmitResult::Rejected(StratumError::unauthorized()),
        ),
    ];
    for (line, verdict) in cases {
        assert_eq!(
            SubmitResult::from_response(&response(line)),
            Ok(verdict.clone()),
            "{line}"
        );
        let written = verdict.to_response(Id::from(4)).to_line();
        assert_eq!(
            SubmitResult::from_response(&response(&written)),
            Ok(verdict),
            "{written}"
        );
    }
}

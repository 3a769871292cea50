//! The real blocks in `tests/vectors/*.json` (copies of `shared/vectors`), written as the lines a pool
//! and a miner would send for them: the notify, the subscribe result, the
//! configure result and the winning submit. Each is read into its typed
//! message with the bytes the vector holds, and written back unchanged.

use std::path::PathBuf;

use hashsplit_stratum::{
    ClientMethod, ConfigureResult, Id, Incoming, Method, Response, ServerMethod, SubscribeResult,
};
use serde_json::{Value, json};

/// Returns the vector files, kept in the repository so a clean clone has them.
fn vectors() -> Vec<(PathBuf, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no vectors in {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let v = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (p, v)
        })
        .collect()
}

fn hex32(v: &Value) -> [u8; 32] {
    hex::decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

fn word(v: &Value) -> u32 {
    u32::from_str_radix(v.as_str().unwrap(), 16).unwrap()
}

#[test]
fn notify_lines_carry_the_vector_bytes_in_wire_order() {
    for (path, v) in vectors() {
        let n = &v["notify"];
        let params = json!([
            n["job_id"],
            n["prevhash"],
            n["coinb1"],
            n["coinb2"],
            n["merkle_branch"],
            n["version"],
            n["nbits"],
            n["ntime"],
            n["clean_jobs"]
        ]);
        let line = json!({"id": null, "method": "mining.notify", "params": params}).to_string();
        let Ok(Incoming::Call {
            id: Id::Null,
            method: ServerMethod::Notify(notify),
        }) = Incoming::<ServerMethod>::from_line(&line)
        else {
            panic!("{}: {line} is a notify", path.display())
        };
        assert_eq!(notify.prevhash, hex32(&n["prevhash"]), "{}", path.display());
        assert_eq!(hex::encode(&notify.coinb1), n["coinb1"].as_str().unwrap());
        assert_eq!(hex::encode(&notify.coinb2), n["coinb2"].as_str().unwrap());
        let branch: Vec<[u8; 32]> = n["merkle_branch"]
            .as_array()
            .unwrap()
            .iter()
            .map(hex32)
            .collect();
        assert_eq!(notify.merkle_branch, branch);
        assert_eq!(notify.version, word(&n["version"]));
        assert_eq!(notify.nbits, word(&n["nbits"]));
        assert_eq!(notify.ntime, word(&n["ntime"]));
        assert!(notify.clean_jobs);
        // Written back: the same params, byte for byte.
        assert_eq!(
            ServerMethod::Notify(notify).to_params(),
            params.as_array().unwrap().clone()
        );
    }
}

#[test]
fn session_lines_for_the_vector_share() {
    for (path, v) in vectors() {
        let name = path.display();
        let subscribe = Response::ok(
            Id::from(1),
            json!([
                [["mining.notify", "1"]],
                v["extranonce1"],
                v["extranonce2_size"]
            ]),
        );
        let result = SubscribeResult::from_result(&subscribe.result).unwrap();
        assert_eq!(
            hex::encode(&result.extranonce1),
            v["extranonce1"].as_str().unwrap()
        );
        assert_eq!(
            Some(result.extranonce2_size as u64),
            v["extranonce2_size"].as_u64()
        );

        let configure = json!({"version-rolling": true, "version-rolling.mask": v["version_mask"]});
        let granted = ConfigureResult::from_result(&configure).unwrap();
        assert_eq!(
            granted.version_rolling,
            Some(word(&v["version_mask"])),
            "{name}"
        );

        let s = &v["submit"];
        let line = json!({
            "id": 4,
            "method": "mining.submit",
            "params": ["worker", v["notify"]["job_id"], s["extranonce2"], s["ntime"], s["nonce"], s["version_bits"]],
        })
        .to_string();
        let Ok(Incoming::Call {
            id,
            method: ClientMethod::Submit(submit),
        }) = Incoming::<ClientMethod>::from_line(&line)
        else {
            panic!("{name}: {line} is a submit")
        };
        assert_eq!(id, Id::from(4));
        assert_eq!(submit.extranonce2, s["extranonce2"].as_str().unwrap());
        assert_eq!(submit.nonce, s["nonce"].as_str().unwrap());
        assert_eq!(submit.version_bits.as_deref(), s["version_bits"].as_str());
        let written = ClientMethod::Submit(submit.clone()).to_line(id);
        assert_eq!(
            serde_json::from_str::<Value>(&written).unwrap(),
            serde_json::from_str::<Value>(&line).unwrap(),
            "{name}"
        );
    }
}

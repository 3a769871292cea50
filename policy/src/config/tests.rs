use super::*;

const MINIMAL: &str = r#"
[policy]
max_share = 0.34

[[pool]]
name = "a"
url = "stratum+tcp://a.example:3333"
user = "me"

[[pool]]
name = "b"
url = "stratum+tcp://b.example:3333"
user = "me"

[[pool]]
name = "c"
url = "stratum+tcp://[::1]:4444"
user = "me"
max_share = 0.5
weight = 2
network_share = 0.04
"#;

#[test]
fn a_minimal_file_loads_with_defaults() {
    let (policy, warnings) = Policy::from_toml_str(MINIMAL).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(policy.config.window, Duration::from_secs(600));
    assert_eq!(policy.config.min_dwell, Duration::from_secs(30));
    assert_eq!(policy.config.rebalance_every, Duration::from_secs(5));
    assert_eq!(policy.config.on_infeasible, OnInfeasible::Spread);
    assert_eq!(policy.pools.len(), 3);
    assert_eq!(policy.pools[0].password, "x");
    assert_eq!(policy.pools[0].weight, 1.0);
    assert_eq!(policy.cap(PoolId(0)).get(), 0.34);
    assert_eq!(policy.cap(PoolId(2)).get(), 0.5);
    assert_eq!(policy.pools[2].weight, 2.0);
    assert_eq!(policy.pools[2].url.host, "::1");
    assert_eq!(policy.pools[2].url.port, 4444);
    assert_eq!(policy.pool_by_name("b"), Some(PoolId(1)));
}

#[test]
fn every_problem_is_reported_at_once_with_path_and_line() {
    let text = r#"[policy]
max_share = 1.5
window = "10s"
rebalance_every = "5s"
min_dwell = "soon"

[[pool]]
name = "a"
url = "http://a.example:3333"
user = "me"

[[pool]]
name = "b"
url = "stratum+tcp://b.example:3333"
user = "me"
max_share = 0

[[pool]]
name = "a"
url = "stratum+tcp://c.example"
user = "me"
colour = "red"
"#;
    let error = Policy::from_toml_str(text).unwrap_err();
    let found: Vec<(&str, Option<usize>)> = error
        .errors
        .iter()
        .map(|p| (p.path.as_str(), p.location.map(|l| l.0)))
        .collect();
    for expected in [
        ("policy.max_share", Some(2)),
        ("policy.window", Some(3)),
        ("policy.min_dwell", Some(5)),
        ("pool[0].url", Some(9)),
        ("pool[1].max_share", Some(16)),
        ("pool[2].colour", Some(22)),
    ] {
        assert!(found.contains(&expected), "{expected:?} not in {found:?}");
    }
}

#[test]
fn duplicate_names_and_bad_urls_are_all_reported() {
    let text = r#"[policy]
[[pool]]
name = "a"
url = "stratum+tcp://a.example:3333"
user = "me"
[[pool]]
name = "a"
url = "stratum+tcp://a.example:0"
user = "me"
weight = -1
"#;
    let error = Policy::from_toml_str(text).unwrap_err();
    let paths: Vec<&str> = error.errors.iter().map(|p| p.path.as_str()).collect();
    assert!(paths.contains(&"pool[1].name"), "{paths:?}");
    assert!(paths.contains(&"pool[1].url"), "{paths:?}");
    assert!(paths.contains(&"pool[1].weight"), "{paths:?}");
    assert_eq!(error.errors[0].location.map(|l| l.0), Some(7));
}

#[test]
fn the_name_none_is_reserved_for_metrics() {
    let text = r#"[policy]
[[pool]]
name = "none"
url = "stratum+tcp://a.example:3333"
user = "me"
"#;
    let error = Policy::from_toml_str(text).unwrap_err();
    assert_eq!(error.errors[0].path, "pool[0].name");
    assert!(
        error.errors[0].message.contains("reserved"),
        "{}",
        error.errors[0]
    );
}

#[test]
fn missing_sections_are_errors() {
    let error = Policy::from_toml_str("").unwrap_err();
    let paths: Vec<&str> = error.errors.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["policy", "pool"]);
}

#[test]
fn caps_that_cannot_reach_one_are_a_warning_naming_the_shortfall() {
    let text = MINIMAL.replace("max_share = 0.5", "max_share = 0.2");
    let (_, warnings) = Policy::from_toml_str(&text).unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].message.contains("shortfall 0.120"),
        "{}",
        warnings[0]
    );
}

#[test]
fn a_window_too_short_for_the_dwell_is_a_warning() {
    let text = MINIMAL.replace("max_share = 0.34", "max_share = 0.34\nmin_dwell = \"5m\"");
    let (_, warnings) = Policy::from_toml_str(&text).unwrap();
    assert!(
        warnings.iter().any(|w| w.path == "policy.window"),
        "{warnings:?}"
    );
}

#[test]
fn a_fallback_names_a_pool_and_the_shortfall_warning_says_it_goes_there() {
    let text = MINIMAL
        .replace("max_share = 0.5", "max_share = 0.2")
        .replace(
            "max_share = 0.34\n\n",
            "max_share = 0.34\nfallback = \"c\"\n\n",
        );
    let (policy, warnings) = Policy::from_toml_str(&text).unwrap();
    assert_eq!(policy.config.fallback.as_deref(), Some("c"));
    assert_eq!(policy.fallback(), Some(PoolId(2)));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].message.contains("fallback pool \"c\""),
        "{}",
        warnings[0]
    );
}

#[test]
fn a_fallback_that_names_no_pool_is_an_error_at_its_line() {
    let text = MINIMAL.replace(
        "max_share = 0.34\n\n",
        "max_share = 0.34\nfallback = \"node\"\n\n",
    );
    let error = Policy::from_toml_str(&text).unwrap_err();
    assert_eq!(error.errors.len(), 1, "{error}");
    assert_eq!(error.errors[0].path, "policy.fallback");
    assert_eq!(error.errors[0].location, Some((4, 12)), "{error}");
    assert!(error.errors[0].message.contains("\"node\""), "{error}");
}

#[test]
fn an_unknown_on_infeasible_is_an_error_naming_the_key() {
    let text = MINIMAL.replace("max_share = 0.34", "on_infeasible = \"random\"");
    let error = Policy::from_toml_str(&text).unwrap_err();
    assert_eq!(error.errors[0].path, "policy.on_infeasible");
}

#[test]
fn pool_urls_need_the_scheme_a_host_and_a_port() {
    assert_eq!(
        PoolUrl::parse("stratum+tcp://mine.ocean.xyz:3334"),
        Ok(PoolUrl {
            scheme: Scheme::Tcp,
            host: "mine.ocean.xyz".into(),
            port: 3334
        })
    );
    for (text, scheme) in [
        ("stratum+ssl://pool.example:443", Scheme::Ssl),
        ("stratum+tls://[::1]:4443", Scheme::Tls),
    ] {
        let url = PoolUrl::parse(text).expect("a TLS url parses");
        assert_eq!(url.scheme, scheme);
        assert!(url.scheme.is_tls());
        assert_eq!(url.to_string(), text, "it prints as written");
    }
    assert!(!Scheme::Tcp.is_tls());
    for bad in [
        "mine.ocean.xyz:3334",
        "stratum+tcp://mine.ocean.xyz",
        "stratum+tcp://:3334",
        "stratum+tcp://host:99999",
        "stratum+ssl://host",
        "stratum+https://host:3334",
        "stratum+tcp://[::1:3334",
    ] {
        assert!(PoolUrl::parse(bad).is_err(), "{bad} parsed");
    }
}

fn one_pool(url: &str, extra: &str) -> String {
    format!(
        "[policy]\nmax_share = 1\n\n[[pool]]\nname = \"a\"\nurl = \"{url}\"\nuser = \"me\"\n{extra}"
    )
}

#[test]
fn a_tls_pool_takes_a_ca_file() {
    let (policy, warnings) = Policy::from_toml_str(&one_pool(
        "stratum+ssl://a.example:4443",
        "ca_file = \"/etc/hashsplit/a-ca.pem\"\n",
    ))
    .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let pool = &policy.pools[0];
    assert!(pool.url.scheme.is_tls());
    assert_eq!(
        pool.tls.ca_file.as_deref(),
        Some(std::path::Path::new("/etc/hashsplit/a-ca.pem"))
    );
    assert!(!pool.tls.insecure);
}

#[test]
fn tls_insecure_loads_with_a_loud_warning() {
    let (policy, warnings) = Policy::from_toml_str(&one_pool(
        "stratum+tls://a.example:4443",
        "tls_insecure = true\n",
    ))
    .unwrap();
    assert!(policy.pools[0].tls.insecure);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].path, "pool[0].tls_insecure");
    assert_eq!(warnings[0].location, Some((8, 16)));
    assert!(
        warnings[0]
            .message
            .contains("TLS CERTIFICATE VERIFICATION IS OFF"),
        "{warnings:?}"
    );
}

#[test]
fn tls_options_on_a_plain_pool_or_together_are_errors() {
    let error = Policy::from_toml_str(&one_pool(
        "stratum+tcp://a.example:3333",
        "ca_file = \"ca.pem\"\ntls_insecure = true\n",
    ))
    .unwrap_err();
    let paths: Vec<&str> = error.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["pool[0].ca_file", "pool[0].tls_insecure"]);
    assert!(
        error.errors[0].message.contains("stratum+ssl://"),
        "{error}"
    );

    let error = Policy::from_toml_str(&one_pool(
        "stratum+ssl://a.example:3333",
        "ca_file = \"ca.pem\"\ntls_insecure = true\n",
    ))
    .unwrap_err();
    let paths: Vec<&str> = error.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["pool[0].tls_insecure"]);

    let error = Policy::from_toml_str(&one_pool(
        "stratum+ssl://a.example:3333",
        "ca_file = \" \"\n",
    ))
    .unwrap_err();
    assert_eq!(error.errors[0].path, "pool[0].ca_file");
}

#[test]
fn tls_insecure_false_is_the_default_and_allowed_anywhere() {
    let (policy, warnings) = Policy::from_toml_str(&one_pool(
        "stratum+tcp://a.example:3333",
        "tls_insecure = false\n",
    ))
    .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(!policy.pools[0].tls.insecure);
}

#[test]
fn a_disabled_pool_is_left_out_of_the_split_but_still_checked() {
    let text = MINIMAL.replace("name = \"b\"\n", "name = \"b\"\nenabled = false\n");
    let (policy, _) = Policy::from_toml_str(&text).unwrap();
    let names: Vec<&str> = policy.pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["a", "c"]);
    assert_eq!(policy.disabled.len(), 1);
    assert_eq!(policy.disabled[0].name, "b");

    // Its values are validated like any pool's, and its name stays taken.
    let bad = MINIMAL.replace(
        "name = \"b\"\n",
        "name = \"a\"\nenabled = false\nmax_share = 2\n",
    );
    let errors = Policy::from_toml_str(&bad).unwrap_err().errors;
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        messages.iter().any(|m| m.contains("pool[1].max_share")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("duplicate pool name")),
        "{messages:?}"
    );

    let fallback = text.replacen(
        "max_share = 0.34\n",
        "max_share = 0.34\nfallback = \"b\"\n",
        1,
    );
    let (_, warnings) = Policy::from_toml_str(&fallback).unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.to_string().contains("fallback pool \"b\" is disabled")),
        "{warnings:?}"
    );

    let none = "[policy]\n[[pool]]\nname = \"a\"\nurl = \"stratum+tcp://a.example:3333\"\n\
                user = \"me\"\nenabled = false\n";
    let errors = Policy::from_toml_str(none).unwrap_err().errors;
    assert!(
        errors[0]
            .to_string()
            .contains("at least one must be enabled"),
        "{errors:?}"
    );
}

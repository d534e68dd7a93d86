//! Tests of reading the config: defaults, keys named in errors, the environment
//! overlay and its errors, secrets.

use super::*;

const MINIMAL: &str = r#"
[newsletter]
name = "Weekly"
from = "Weekly <news@example.com>"
base_url = "https://example.com/news"
postal_address = "1 Main St"
timezone = "Asia/Karachi"

[[feeds]]
url = "feed.xml"
"#;

fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::parse(
        text,
        "config.toml",
        Path::new("/etc/gazette"),
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

#[test]
fn minimal_config_gets_defaults_and_resolves_paths() {
    let c = parse(MINIMAL, &[]).unwrap();
    assert_eq!(c.ranking.stories, 8);
    assert_eq!(c.database.path, Path::new("/etc/gazette/gazette.db"));
    assert_eq!(
        c.feeds[0].location,
        FeedLocation::File("/etc/gazette/feed.xml".into())
    );
    assert_eq!(c.newsletter.base_url.as_str(), "https://example.com/news/");
    assert_eq!(c.newsletter.list_id, "weekly.example.com");
}

#[test]
fn unknown_key_is_named() {
    let text = format!("{MINIMAL}\n[ranking]\nstoriez = 3\n");
    let e = parse(&text, &[]).unwrap_err().to_string();
    assert!(e.contains("ranking") && e.contains("storiez"), "{e}");
}

#[test]
fn wrong_type_and_bad_values_are_named() {
    let e = parse(&format!("{MINIMAL}\n[ranking]\nstories = \"ten\"\n"), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("ranking.stories"), "{e}");
    let e = parse(&MINIMAL.replace("Asia/Karachi", "Mars/Olympus"), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("newsletter.timezone"), "{e}");
    let e = parse(
        &MINIMAL.replace("Weekly <news@example.com>", "not an address"),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("newsletter.from"), "{e}");
}

#[test]
fn environment_overrides_file_and_names_itself_on_error() {
    let c = parse(
        MINIMAL,
        &[
            ("GAZETTE_DATABASE__PATH", "/var/lib/g.db"),
            ("GAZETTE_RANKING__STORIES", "5"),
            ("GAZETTE_SMTP__PASSWORD", "12345"),
            ("GAZETTE_SMTP__URL", "smtp://mailer@relay.example:2525"),
            ("GAZETTE_SECRET", "s3cret"),
        ],
    )
    .unwrap();
    assert_eq!(c.database.path, Path::new("/var/lib/g.db"));
    assert_eq!(c.ranking.stories, 5);
    let Transport::Smtp(s) = &c.smtp.transport else {
        panic!("smtp expected")
    };
    assert_eq!(s.password.as_ref().unwrap().expose(), "12345");
    assert_eq!(s.user.as_deref(), Some("mailer"));
    assert_eq!(s.port, 2525);
    assert_eq!(c.secret.as_ref().unwrap().expose(), "s3cret");
    // Secrets never show in debug output.
    let debug = format!("{c:?}");
    assert!(!debug.contains("12345") && !debug.contains("s3cret"));

    let e = parse(MINIMAL, &[("GAZETTE_RANKING__STORIES", "many")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("GAZETTE_RANKING__STORIES"), "{e}");
}

#[test]
fn password_in_file_is_refused() {
    let e = parse(&format!("{MINIMAL}\n[smtp]\npassword = \"x\"\n"), &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("smtp.password") && e.contains("GAZETTE_SMTP__PASSWORD"),
        "{e}"
    );
}

#[test]
fn syntax_error_names_the_line() {
    let e = parse("[newsletter]\nname = \n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 2"), "{e}");
}

#[test]
fn environment_value_wrong_in_validation_names_the_variable() {
    let e = parse(MINIMAL, &[("GAZETTE_NEWSLETTER__TIMEZONE", "Mars/Olympus")])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("GAZETTE_NEWSLETTER__TIMEZONE") && e.contains("Mars/Olympus"),
        "{e}"
    );
    assert!(!e.contains("config.toml"), "{e}");
}

#[test]
fn environment_text_is_typed_by_the_field_it_sets() {
    let text = format!(
        "{MINIMAL}\n[smtp]\nurl = \"smtp://relay.example\"\n\n[smtp.dkim]\n\
         domain = \"a.example\"\nselector = \"s1\"\nkey_file = \"dkim.pem\"\n"
    );
    let c = parse(
        &text,
        &[
            // Text that looks like a number stays text where the field is text.
            ("GAZETTE_NEWSLETTER__NAME", "2024"),
            ("GAZETTE_SMTP__RATE", "2"),
            ("GAZETTE_SMTP__REQUIRE_TLS", "true"),
            ("GAZETTE_SMTP__ON_UNCERTAIN", "resend"),
            ("GAZETTE_SMTP__DKIM__SELECTOR", "2025"),
        ],
    )
    .unwrap();
    assert_eq!(c.newsletter.name, "2024");
    assert_eq!(c.smtp.rate, 2.0);
    assert!(c.smtp.require_tls);
    assert_eq!(c.smtp.on_uncertain, UncertainPolicy::Resend);
    let dkim = c.smtp.dkim.unwrap();
    assert_eq!(
        (dkim.domain.as_str(), dkim.selector.as_str()),
        ("a.example", "2025")
    );

    for (var, value) in [
        ("GAZETTE_SMTP__REQUIRE_TLS", "yes"),
        ("GAZETTE_SMTP__ON_UNCERTAIN", "maybe"),
        ("GAZETTE_RANKING__STORIES", "-1"),
        ("GAZETTE_SMTP__DKIM", "on"),
    ] {
        let e = parse(&text, &[(var, value)]).unwrap_err().to_string();
        assert!(e.contains(var) && !e.contains("config.toml"), "{e}");
    }
}

#[test]
fn unknown_key_from_the_environment_names_the_variable() {
    for var in [
        "GAZETTE_RANKING__STORIEZ",
        "GAZETTE_NOPE__STORIES",
        "GAZETTE_FEEDS__URL",
    ] {
        let e = parse(MINIMAL, &[(var, "3")]).unwrap_err().to_string();
        assert!(e.contains(var) && !e.contains("config.toml"), "{e}");
    }
    // Variables without `__` are not config keys.
    parse(
        MINIMAL,
        &[("GAZETTE_LOG", "debug"), ("GAZETTE_CONFIG", "x")],
    )
    .unwrap();
}

/// An error as anyhow's `{:#}` prints it: each message of the chain, joined by ": ".
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

#[test]
fn missing_file_says_why_once_and_how_to_pick_another() {
    let path = Path::new("/nonexistent/gazette/config.toml");
    let os = std::fs::read(path).unwrap_err().to_string();
    let text = chain(&Config::from_file(path).unwrap_err());
    assert_eq!(text.matches(&os).count(), 1, "{text}");
    assert!(
        text.starts_with("/nonexistent/gazette/config.toml: cannot read")
            && text.contains("--config"),
        "{text}"
    );
}

#[test]
fn smtp_retry_base_and_pipelining_default_and_can_be_set() {
    let c = parse(MINIMAL, &[]).unwrap();
    assert_eq!(c.smtp.retry_base, std::time::Duration::from_secs(1));
    assert_eq!(c.smtp.pipelining, Pipelining::Auto);

    let text = format!("{MINIMAL}\n[smtp]\nretry_base_ms = 50\npipelining = \"never\"\n");
    let c = parse(&text, &[]).unwrap();
    assert_eq!(c.smtp.retry_base, std::time::Duration::from_millis(50));
    assert_eq!(c.smtp.pipelining, Pipelining::Never);

    let c = parse(
        &text,
        &[
            ("GAZETTE_SMTP__RETRY_BASE_MS", "5"),
            ("GAZETTE_SMTP__PIPELINING", "always"),
        ],
    )
    .unwrap();
    assert_eq!(c.smtp.retry_base, std::time::Duration::from_millis(5));
    assert_eq!(c.smtp.pipelining, Pipelining::Always);
}

#[test]
fn smtp_retry_base_and_pipelining_errors_name_the_key() {
    for (line, key) in [
        ("retry_base_ms = 0", "smtp.retry_base_ms"),
        ("retry_base_ms = 300001", "smtp.retry_base_ms"),
        ("retry_base_ms = \"fast\"", "smtp.retry_base_ms"),
        ("pipelining = \"sometimes\"", "smtp.pipelining"),
        ("pipelining = true", "smtp.pipelining"),
    ] {
        let e = parse(&format!("{MINIMAL}\n[smtp]\n{line}\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("config.toml") && e.contains(key), "{line}: {e}");
    }
    for (var, value) in [
        ("GAZETTE_SMTP__RETRY_BASE_MS", "0"),
        ("GAZETTE_SMTP__RETRY_BASE_MS", "1s"),
        ("GAZETTE_SMTP__PIPELINING", "yes"),
    ] {
        let e = parse(MINIMAL, &[(var, value)]).unwrap_err().to_string();
        assert!(e.contains(var) && !e.contains("config.toml"), "{e}");
    }
}

#[test]
fn an_empty_or_short_admin_token_is_refused_by_its_variable() {
    for token in ["", " ", "short"] {
        let e = parse(MINIMAL, &[("GAZETTE_SERVER__ADMIN_TOKEN", token)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("GAZETTE_SERVER__ADMIN_TOKEN"), "{e}");
        assert!(e.contains("at least 16"), "{e}");
    }
    assert!(parse(
        MINIMAL,
        &[("GAZETTE_SERVER__ADMIN_TOKEN", "a-long-enough-token")]
    )
    .is_ok());
    // It travels in a cookie: no separators, nothing a header cannot carry.
    for token in [
        "a-long-enough;token",
        "a long enough token",
        "a-long-enough-tökén",
    ] {
        let e = parse(MINIMAL, &[("GAZETTE_SERVER__ADMIN_TOKEN", token)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("printable ASCII"), "{e}");
    }
}

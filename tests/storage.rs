//! The database under several processes, and the errors a person sees first.

use crate::util::{stderr, Site, BIN};

#[test]
fn two_processes_creating_one_database_at_the_same_instant_both_succeed() {
    // Several rounds: the race is between two processes' first statements.
    for round in 0..5 {
        let site = Site::new(&["https://feeds.test/feed.xml"], "");
        let children: Vec<_> = (0..2)
            .map(|_| {
                site.command(&["init"])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: gazette init failed: {}",
                stderr(&out)
            );
            assert!(String::from_utf8_lossy(&out.stdout).contains("schema version"));
        }
    }
}

#[test]
fn a_missing_config_file_is_named_once_with_how_to_pick_another() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .env_clear()
        .current_dir(dir.path())
        .arg("init")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("config.toml"), "{err}");
    assert_eq!(
        err.matches("No such file or directory").count(),
        1,
        "the cause is said once: {err}"
    );
    assert!(
        err.contains("--config") && err.contains("GAZETTE_CONFIG"),
        "{err}"
    );
}

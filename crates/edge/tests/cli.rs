//! The `agentgate-edge` binary's configuration checks: a bad configuration exits with code 3
//! and says why, before binding anything.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn edge(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_agentgate-edge"))
        .args(args)
        .env_remove("AGENTGATE_SESSION_KEY")
        .env_remove("AGENTGATE_SESSION_KEY_FILE")
        .env_remove("AGENTGATE_CORE")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

#[test]
fn configuration_is_checked_before_serving() {
    let key = "k".repeat(32);
    let (code, out) = edge(&[
        "--core",
        "127.0.0.1:1",
        "--session-key",
        &key,
        "--validate-only",
    ]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = edge(&[
        "--core",
        "127.0.0.1:1",
        "--session-key",
        "short",
        "--validate-only",
    ]);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("at least 32 bytes"), "{out}");
    let (code, out) = edge(&[
        "--core",
        "127.0.0.1:1",
        "--session-key",
        &key,
        "--audit-batch",
        "0",
    ]);
    assert_eq!(code, Some(3), "{out}");
    // The key from a file (a mounted Secret), its trailing newline ignored; or neither given.
    let dir = std::env::temp_dir().join(format!("agentgate-edge-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("session-key");
    std::fs::write(&file, format!("{key}\n")).unwrap();
    let file = file.to_str().unwrap();
    let (code, out) = edge(&[
        "--core",
        "127.0.0.1:1",
        "--session-key-file",
        file,
        "--validate-only",
    ]);
    assert_eq!(code, Some(0), "{out}");
    std::fs::write(file, "short\n").unwrap();
    let (code, out) = edge(&[
        "--core",
        "127.0.0.1:1",
        "--session-key-file",
        file,
        "--validate-only",
    ]);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("at least 32 bytes"), "{out}");
    let (code, out) = edge(&[
        "--core",
        "127.0.0.1:1",
        "--session-key-file",
        "/nonexistent/key",
    ]);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("cannot read --session-key-file"), "{out}");
    let (code, out) = edge(&["--core", "127.0.0.1:1", "--validate-only"]);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("--session-key-file"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
    // Missing required flags: clap's usage error.
    let (code, _) = edge(&["--validate-only"]);
    assert_eq!(code, Some(2));
}

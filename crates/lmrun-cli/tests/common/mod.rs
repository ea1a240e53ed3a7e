//! Helpers shared by the binary tests that exercise the real mlock failure branch: the command
//! prefix that drops CAP_IPC_LOCK and lowers RLIMIT_MEMLOCK, and a world-readable copy of the
//! binary that uid 65534 can run, and the JSON of a successful run.
#![allow(dead_code)] // each test binary uses only some of these

use std::path::{Path, PathBuf};
use std::process::Command;

/// The command prefix that runs a program without CAP_IPC_LOCK and with a 64 KiB mlock limit,
/// or `None` when the tools are missing.
pub fn unprivileged() -> Option<Vec<String>> {
    let have = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if !have("prlimit") {
        return None;
    }
    let uid = Command::new("id").arg("-u").output().ok()?;
    let is_root = String::from_utf8_lossy(&uid.stdout).trim() == "0";
    let mut cmd = Vec::new();
    if is_root {
        if !have("setpriv") {
            return None;
        }
        cmd.extend(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
            ]
            .map(String::from),
        );
    }
    cmd.extend(["prlimit", "--memlock=65536:65536"].map(String::from));
    Some(cmd)
}

/// A world-readable temporary directory holding a copy of the `lmrun` binary `bin`, so an
/// unprivileged uid can run it; returns the directory and the copy's path.
pub fn private_binary(bin: &str, prefix: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    set_mode(dir.path(), 0o755);
    let copy = dir.path().join("lmrun");
    std::fs::copy(bin, &copy).unwrap();
    set_mode(&copy, 0o755);
    (dir, copy)
}

/// Set a path's permission bits.
pub fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The JSON that a successful run of the binary printed on stdout; panics naming `what`, the
/// exit status and stderr when the run failed, or stdout when it is not JSON.
pub fn success_json(out: &std::process::Output, what: &str) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{what} ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Where the real models are cached (`$LMRUN_MODELS_DIR`, default `~/.cache/lmrun/models`).
pub fn models_dir() -> PathBuf {
    std::env::var_os("LMRUN_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/lmrun/models")
        })
}

/// A real model from the cache; a missing one fails the test (run scripts/fetch_models.sh).
pub fn model(name: &str) -> PathBuf {
    let p = models_dir().join(name);
    assert!(
        p.is_file(),
        "{} is missing: run scripts/fetch_models.sh first",
        p.display()
    );
    p
}

/// Gemma 3 270M, Q4_K_M.
pub fn gemma() -> PathBuf {
    model("gemma-3-270m-q4_k_m.gguf")
}

/// Qwen2.5-Coder 0.5B Instruct, Q4_K_M mix.
pub fn qwen() -> PathBuf {
    model("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
}

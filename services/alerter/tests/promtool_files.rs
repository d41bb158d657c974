//! The repository's rule unit tests (`rules/tests`) pass under both Debian's `promtool
//! test rules` and weir's engine, and a broken copy of the rules fails under both with
//! the same report: weir evaluates as Prometheus does, not only on the happy path.
use std::path::{Path, PathBuf};
use std::process::Command;

use weir_alerter::promtool::run_file;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn test_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".test.yml"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no test files in {}", dir.display());
    v
}

/// promtool's output on a file, without blank lines (it prints some to stderr).
fn promtool(file: &Path) -> (bool, String) {
    let out = Command::new("promtool")
        .args(["test", "rules"])
        .arg(file)
        .output()
        .expect("promtool (Debian's prometheus package) is installed by scripts/stack.sh");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn weir(file: &Path) -> (bool, String) {
    let mut buf = Vec::new();
    let ok = weir_alerter::promtool::run_files(&[file.to_path_buf()], &mut buf);
    (ok, String::from_utf8_lossy(&buf).to_string())
}

fn non_blank(s: &str) -> Vec<&str> {
    s.lines().filter(|l| !l.trim().is_empty()).collect()
}

#[test]
fn repository_rule_tests_pass_under_promtool_and_weir() {
    let dir = repo().join("rules/tests");
    for f in test_files(&dir) {
        let r = run_file(&f);
        assert!(
            r.passed(),
            "weir: {}: {:?} {:?}",
            f.display(),
            r.errors,
            r.failures
        );
        let (ok, out) = promtool(&f);
        assert!(ok, "promtool: {}:\n{out}", f.display());
    }
}

#[test]
fn broken_rules_fail_the_same_way_under_both() {
    // Each mutation changes what fires; both tools must report the same failures.
    let mutations: [(&str, &str, &str); 5] = [
        ("fleet.rules.yml", "> 80", ">= 80"),
        ("fleet.rules.yml", "for: 30s", "for: 45s"),
        (
            "constructs.rules.yml",
            "keep_firing_for: 3m",
            "keep_firing_for: 1m",
        ),
        ("constructs.rules.yml", "[5m]", "[3m]"),
        ("constructs.rules.yml", "by (site)", "without (instance)"),
    ];
    for (file, from, to) in mutations {
        let tmp = tempfile::tempdir().unwrap();
        let rules = tmp.path().join("rules");
        std::fs::create_dir_all(rules.join("tests")).unwrap();
        for f in ["fleet.rules.yml", "constructs.rules.yml"] {
            let mut text = std::fs::read_to_string(repo().join("rules").join(f)).unwrap();
            if f == file {
                assert!(text.contains(from), "{f} no longer contains {from:?}");
                text = text.replacen(from, to, 1);
            }
            std::fs::write(rules.join(f), text).unwrap();
        }
        let mut failed_somewhere = false;
        for t in test_files(&repo().join("rules/tests")) {
            let copy = rules.join("tests").join(t.file_name().unwrap());
            std::fs::copy(&t, &copy).unwrap();
            let (p_ok, p_out) = promtool(&copy);
            let (w_ok, w_out) = weir(&copy);
            assert_eq!(
                p_ok,
                w_ok,
                "{file}: {from} -> {to}: {}\npromtool:\n{p_out}\nweir:\n{w_out}",
                t.display()
            );
            assert_eq!(
                non_blank(&p_out),
                non_blank(&w_out),
                "{file}: {from} -> {to}"
            );
            failed_somewhere |= !p_ok;
        }
        assert!(
            failed_somewhere,
            "{file}: {from} -> {to} changed nothing the tests see"
        );
    }
}

//! `tuning/check` and `tuning/irq-affinity.sh`: the checker's output on this
//! host is parsed line by line, its verdicts and exit codes are checked
//! against a fake /proc root with values below and above the
//! recommendations, and `--apply` is exercised against that fake root only
//! (never against the real /proc). Uses only std; needs python3 and bash.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const VERDICTS: [&str; 5] = ["OK", "LOW", "HIGH", "DIFF", "ABSENT"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One sysctl of the installed file: recommended value, and whether a
/// leading `-` marks it as allowed to be absent.
struct Rec {
    value: String,
    optional: bool,
}

fn norm(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The sysctl file as the kernel tools read it (comments ignored).
fn sysctl_recs() -> BTreeMap<String, Rec> {
    let text = fs::read_to_string(repo().join("tuning/sysctl.d/90-shardcast.conf")).unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let optional = line.starts_with('-');
        let (key, value) = line.trim_start_matches('-').split_once('=').unwrap();
        let prev = out.insert(
            key.trim().to_owned(),
            Rec {
                value: norm(value),
                optional,
            },
        );
        assert!(prev.is_none(), "{key} is set twice");
    }
    assert!(
        out.len() >= 10,
        "the sysctl file looks empty: {out:?}",
        out = out.len()
    );
    out
}

/// The soft limits of the limits.d file, by item.
fn limit_recs() -> BTreeMap<String, String> {
    let text = fs::read_to_string(repo().join("tuning/limits.d/90-shardcast.conf")).unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() == 4 && !line.starts_with('#') && f[1] == "soft" {
            out.insert(f[2].to_owned(), f[3].to_owned());
        }
    }
    assert!(out.contains_key("nofile") && out.contains_key("memlock"));
    out
}

/// One parsed `VERDICT LEVEL KIND NAME CURRENT RECOMMENDED NOTE` line.
#[derive(Debug, Clone)]
struct Line {
    verdict: String,
    level: String,
    kind: String,
    name: String,
    current: String,
    recommended: String,
}

/// Everything `tuning/check` printed, parsed; panics on any line that does
/// not follow the documented format.
#[derive(Debug)]
struct Report {
    settings: Vec<Line>,
    events: Vec<Vec<String>>,
    result: String,
    required_short: usize,
    advisory_short: usize,
    checked: usize,
    code: i32,
}

impl Report {
    fn get(&self, name: &str) -> &Line {
        self.settings
            .iter()
            .find(|l| l.name == name)
            .unwrap_or_else(|| panic!("no line for {name}: {self:#?}"))
    }
    fn event(&self, tag: &str, name: &str) -> Option<&Vec<String>> {
        self.events
            .iter()
            .find(|e| e[0] == tag && e.get(2).map(String::as_str) == Some(name))
    }
}

fn parse(out: Output) -> Report {
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code().expect("exited");
    assert!(code == 0 || code == 1, "exit {code}: {stderr}\n{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("# tuning/check "), "{stdout}");
    let mut settings = Vec::new();
    let mut events = Vec::new();
    let mut summary = None;
    for (i, line) in lines.iter().enumerate().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        match f[0] {
            "summary" => {
                assert_eq!(i, lines.len() - 1, "summary is the last line: {stdout}");
                assert_eq!(f.len(), 5, "{line}");
                let num =
                    |k: &str, v: &str| -> usize { v.strip_prefix(k).unwrap().parse().unwrap() };
                summary = Some((
                    f[1].to_owned(),
                    num("required_short=", f[2]),
                    num("advisory_short=", f[3]),
                    num("checked=", f[4]),
                ));
            }
            "SET" | "CLAMPED" | "FAILED" => {
                assert_eq!(f.len(), 5, "{line}");
                assert_eq!(f[1], "sysctl", "{line}");
                events.push(f.iter().map(|s| s.to_string()).collect());
            }
            "MANUAL" => {
                assert_eq!(f.len(), 4, "{line}");
                assert!(f[1] == "sysctl" || f[1] == "limit", "{line}");
                events.push(f.iter().map(|s| s.to_string()).collect());
            }
            "NOTE" => {
                assert_eq!(f.len(), 2, "{line}");
                events.push(f.iter().map(|s| s.to_string()).collect());
            }
            v => {
                assert!(VERDICTS.contains(&v), "unknown line {line:?}");
                assert_eq!(f.len(), 7, "{line:?}");
                assert!(f[1] == "required" || f[1] == "advisory", "{line}");
                assert!(f[2] == "sysctl" || f[2] == "limit", "{line}");
                assert!(
                    !f[4].is_empty() && !f[5].is_empty() && !f[6].is_empty(),
                    "{line}"
                );
                settings.push(Line {
                    verdict: f[0].to_owned(),
                    level: f[1].to_owned(),
                    kind: f[2].to_owned(),
                    name: f[3].to_owned(),
                    current: f[4].to_owned(),
                    recommended: f[5].to_owned(),
                });
            }
        }
    }
    let (result, required_short, advisory_short, checked) =
        summary.unwrap_or_else(|| panic!("no summary line: {stdout}"));
    let r = Report {
        settings,
        events,
        result,
        required_short,
        advisory_short,
        checked,
        code,
    };
    // The file's settings, each exactly once, with the file's value.
    let sysctls = sysctl_recs();
    let limits = limit_recs();
    let names: Vec<&str> = r.settings.iter().map(|l| l.name.as_str()).collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(
        unique.len(),
        names.len(),
        "a setting printed twice: {names:?}"
    );
    assert_eq!(r.checked, names.len());
    assert_eq!(names.len(), sysctls.len() + limits.len(), "{names:?}");
    for l in &r.settings {
        let want = match l.kind.as_str() {
            "sysctl" => &sysctls[&l.name].value,
            _ => &limits[&l.name],
        };
        assert_eq!(&l.recommended, want, "{l:?}");
    }
    // The summary and the exit code agree with the lines.
    let short = |l: &&Line| {
        l.verdict != "OK"
            && !(l.verdict == "ABSENT" && l.kind == "sysctl" && sysctls[&l.name].optional)
    };
    let req = r
        .settings
        .iter()
        .filter(short)
        .filter(|l| l.level == "required")
        .count();
    let adv = r
        .settings
        .iter()
        .filter(short)
        .filter(|l| l.level == "advisory")
        .count();
    assert_eq!((r.required_short, r.advisory_short), (req, adv), "{r:#?}");
    assert_eq!(r.result, if req > 0 { "FAIL" } else { "PASS" });
    assert_eq!(
        r.code,
        i32::from(req > 0),
        "exit code follows the required settings"
    );
    r
}

fn check(args: &[&str]) -> Report {
    let out = Command::new(repo().join("tuning/check"))
        .args(args)
        .output()
        .expect("run tuning/check (python3)");
    parse(out)
}

/// A fake root whose /proc/sys holds the recommended value of every sysctl
/// and whose /proc/self/limits holds the recommended limits.
struct FakeRoot(PathBuf);

impl FakeRoot {
    fn new(name: &str) -> FakeRoot {
        let dir =
            std::env::temp_dir().join(format!("shardcast-tuning-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let root = FakeRoot(dir);
        for (key, rec) in sysctl_recs() {
            root.set(&key, &rec.value.replace(' ', "\t"));
        }
        root.limits("1100000", "1100000", "unlimited");
        root
    }
    fn path(&self, key: &str) -> PathBuf {
        let mut p = self.0.join("proc/sys");
        for part in key.split('.') {
            p.push(part);
        }
        p
    }
    fn set(&self, key: &str, value: &str) {
        let p = self.path(key);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, format!("{value}\n")).unwrap();
    }
    fn get(&self, key: &str) -> String {
        norm(&fs::read_to_string(self.path(key)).unwrap())
    }
    fn remove(&self, key: &str) {
        fs::remove_file(self.path(key)).unwrap();
    }
    /// `memlock` in bytes or "unlimited", as /proc shows it.
    fn limits(&self, nofile_soft: &str, nofile_hard: &str, memlock: &str) {
        let dir = self.0.join("proc/self");
        fs::create_dir_all(&dir).unwrap();
        let text = format!(
            "Limit                     Soft Limit           Hard Limit           Units     \n\
             Max cpu time              unlimited            unlimited            seconds   \n\
             Max open files            {nofile_soft:<20} {nofile_hard:<20} files     \n\
             Max locked memory         {memlock:<20} {memlock:<20} bytes     \n"
        );
        fs::write(dir.join("limits"), text).unwrap();
    }
    fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for FakeRoot {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The recommended number in field `i` of `key`, moved by `delta`.
fn rec_field(key: &str, i: usize, delta: i64) -> String {
    let v: i64 = sysctl_recs()[key]
        .value
        .split(' ')
        .nth(i)
        .unwrap()
        .parse()
        .unwrap();
    (v + delta).to_string()
}

#[test]
fn output_on_this_host_parses_and_reads_proc() {
    let r = check(&[]);
    // What it printed as current is what /proc/sys holds right now.
    for l in r.settings.iter().filter(|l| l.kind == "sysctl") {
        let p = Path::new("/proc/sys").join(l.name.replace('.', "/"));
        match fs::read_to_string(&p) {
            Ok(v) if norm(&v).is_empty() => assert_eq!(l.current, "(empty)", "{l:?}"),
            Ok(v) => assert_eq!(l.current, norm(&v), "{l:?}"),
            Err(_) => assert_eq!((l.verdict.as_str(), l.current.as_str()), ("ABSENT", "-")),
        }
    }
    // The limits are this process's (inherited by the checker).
    let limits = fs::read_to_string("/proc/self/limits").unwrap();
    let nofile = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .nth(3)
        .unwrap()
        .to_owned();
    assert_eq!(r.get("nofile").current, nofile);
    assert!(r.events.is_empty(), "a plain check changes nothing");
    eprintln!("tuning/check on this host: {} (exit {})", r.result, r.code);
}

#[test]
fn json_matches_the_lines() {
    let root = FakeRoot::new("json");
    root.set("fs.file-max", &rec_field("fs.file-max", 0, -1));
    let lines = check(&["--root", root.arg()]);
    let out = Command::new(repo().join("tuning/check"))
        .args(["--root", root.arg(), "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(lines.code));
    let json = String::from_utf8(out.stdout).unwrap();
    assert!(json.trim_start().starts_with('{') && json.trim_end().ends_with('}'));
    assert!(json.contains("\"name\": \"fs.file-max\""), "{json}");
    assert!(json.contains("\"verdict\": \"LOW\""), "{json}");
    assert!(json.contains(&format!("\"required_short\": {}", lines.required_short)));
}

#[test]
fn recommended_values_pass() {
    let root = FakeRoot::new("pass");
    let r = check(&["--root", root.arg()]);
    for l in &r.settings {
        assert_eq!(l.verdict, "OK", "{l:?}");
        assert_eq!(norm(&l.current), norm(&l.recommended), "{l:?}");
    }
    assert_eq!((r.code, r.result.as_str()), (0, "PASS"));
}

#[test]
fn verdicts_below_and_above_the_recommendations() {
    let root = FakeRoot::new("verdicts");
    // Better than recommended is OK in both directions.
    root.set("fs.file-max", &rec_field("fs.file-max", 0, 1_000_000));
    root.set(
        "net.ipv4.tcp_fin_timeout",
        &rec_field("net.ipv4.tcp_fin_timeout", 0, -5),
    );
    root.set("net.ipv4.ip_local_reserved_ports", "22,8080-8082,9404");
    // Only advisory settings off: reported, but the check passes.
    let rmem = format!("4096\t{}\t6291456", rec_field("net.ipv4.tcp_rmem", 1, 1));
    root.set("net.ipv4.tcp_rmem", &rmem);
    root.set("net.ipv4.tcp_tw_reuse", "2");
    root.set("net.ipv4.tcp_slow_start_after_idle", "1");
    root.limits("1100000", "1100000", "8388608");
    let r = check(&["--root", root.arg()]);
    assert_eq!(r.get("fs.file-max").verdict, "OK");
    assert_eq!(r.get("net.ipv4.tcp_fin_timeout").verdict, "OK");
    assert_eq!(r.get("net.ipv4.tcp_rmem").verdict, "HIGH");
    assert_eq!(r.get("net.ipv4.tcp_rmem").level, "advisory");
    assert_eq!(r.get("net.ipv4.tcp_tw_reuse").verdict, "DIFF");
    assert_eq!(r.get("net.ipv4.ip_local_reserved_ports").verdict, "OK");
    assert_eq!(r.get("net.ipv4.tcp_slow_start_after_idle").verdict, "DIFF");
    assert_eq!(r.get("memlock").verdict, "LOW");
    assert_eq!(r.get("memlock").current, "8192", "KiB, like limits.conf");
    assert_eq!((r.code, r.advisory_short, r.required_short), (0, 4, 0));

    // A required one short: exit 1.
    root.set("fs.nr_open", &rec_field("fs.nr_open", 0, -1));
    root.set("net.ipv4.ip_local_port_range", "32768\t60999");
    root.set("net.ipv4.tcp_mem", "287898\t383867\t575796");
    root.set(
        "net.ipv4.tcp_fin_timeout",
        &rec_field("net.ipv4.tcp_fin_timeout", 0, 45),
    );
    root.limits("20000", "20000", "unlimited");
    let r = check(&["--root", root.arg()]);
    assert_eq!(r.get("fs.nr_open").verdict, "LOW");
    assert_eq!(r.get("net.ipv4.ip_local_port_range").verdict, "LOW");
    assert_eq!(r.get("net.ipv4.tcp_mem").verdict, "LOW");
    assert_eq!(r.get("net.ipv4.tcp_fin_timeout").verdict, "HIGH");
    assert_eq!(r.get("nofile").verdict, "LOW");
    assert_eq!(r.get("nofile").current, "20000");
    assert_eq!(r.get("memlock").verdict, "OK");
    assert_eq!(
        (r.code, r.result.as_str(), r.required_short),
        (1, "FAIL", 4)
    );
}

#[test]
fn absent_keys_fail_only_when_not_optional() {
    let root = FakeRoot::new("absent");
    let recs = sysctl_recs();
    let optional: Vec<&String> = recs
        .iter()
        .filter(|(_, r)| r.optional)
        .map(|(k, _)| k)
        .collect();
    assert!(!optional.is_empty(), "conntrack keys are optional");
    for key in &optional {
        root.remove(key);
    }
    let r = check(&["--root", root.arg()]);
    for key in &optional {
        assert_eq!(r.get(key).verdict, "ABSENT");
        assert_eq!(r.get(key).current, "-");
    }
    assert_eq!(r.code, 0, "optional keys may be absent");
    root.remove("net.core.somaxconn");
    let r = check(&["--root", root.arg()]);
    assert_eq!(r.get("net.core.somaxconn").verdict, "ABSENT");
    assert_eq!(r.code, 1, "a required key that is absent is short");
}

#[test]
fn apply_sets_the_fake_root_and_the_second_check_passes() {
    let root = FakeRoot::new("apply");
    let recs = sysctl_recs();
    // Everything off: numbers below (min) or above (max) the recommendations.
    let low = [
        ("fs.file-max", "2466170"),
        ("fs.nr_open", "1048576"),
        ("net.core.somaxconn", "128"),
        ("net.ipv4.tcp_max_syn_backlog", "2048"),
        ("net.core.netdev_max_backlog", "1000"),
        ("net.ipv4.ip_local_port_range", "32768\t60999"),
        ("net.ipv4.ip_local_reserved_ports", ""),
        ("net.ipv4.tcp_tw_reuse", "2"),
        ("net.ipv4.tcp_mem", "287898\t383867\t575796"),
        ("net.ipv4.tcp_rmem", "4096\t131072\t33554432"),
        ("net.ipv4.tcp_notsent_lowat", "4294967295"),
        ("net.ipv4.tcp_max_orphans", "131072"),
        ("net.ipv4.tcp_fin_timeout", "60"),
        ("net.ipv4.tcp_slow_start_after_idle", "1"),
        ("kernel.io_uring_disabled", "2"),
        ("net.netfilter.nf_conntrack_max", "262144"),
    ];
    for (k, v) in low {
        assert!(recs.contains_key(k), "{k} is in the sysctl file");
        root.set(k, v);
    }
    let before = check(&["--root", root.arg()]);
    assert_eq!(before.code, 1);
    for (k, _) in low {
        assert_ne!(before.get(k).verdict, "OK", "{k}");
    }

    let applied = check(&["--apply", "--root", root.arg()]);
    assert_eq!(applied.code, 0, "post-apply check passes: {applied:#?}");
    for (k, v) in low {
        let set = applied
            .event("SET", k)
            .unwrap_or_else(|| panic!("no SET line for {k}: {applied:#?}"));
        assert_eq!(
            set[3],
            if v.is_empty() {
                "(empty)".to_owned()
            } else {
                norm(v)
            }
        );
    }
    assert!(
        applied.events.iter().any(|e| e[0] == "NOTE"),
        "says it lasts until reboot"
    );
    // The fake files hold the recommendations; a field that is not checked
    // (tcp_rmem's max) keeps its value, and reserved ports are merged.
    for (k, _) in low {
        let got = root.get(k);
        match k {
            "net.ipv4.tcp_rmem" => assert_eq!(got, "4096 16384 33554432"),
            "net.ipv4.ip_local_reserved_ports" => assert_eq!(got, recs[k].value),
            _ => assert_eq!(got, recs[k].value, "{k}"),
        }
    }
    let again = check(&["--root", root.arg()]);
    assert_eq!((again.code, again.result.as_str()), (0, "PASS"));
    assert!(
        again.settings.iter().all(|l| l.verdict == "OK"),
        "{again:#?}"
    );
    assert!(again.events.is_empty());

    // Limits cannot be applied: it says what to change, and still fails.
    root.limits("20000", "20000", "8388608");
    let r = check(&["--apply", "--root", root.arg()]);
    assert_eq!(r.code, 1);
    let manual = r.event("MANUAL", "nofile").expect("MANUAL nofile");
    assert!(manual[3].contains("LimitNOFILE=") && manual[3].contains("limits.d"));
    assert!(r.event("MANUAL", "memlock").unwrap()[3].contains("LimitMEMLOCK=infinity"));
    assert!(
        !r.events.iter().any(|e| e[0] == "SET"),
        "nothing left to write"
    );
}

#[test]
fn apply_reports_what_it_cannot_write() {
    let root = FakeRoot::new("readonly");
    root.set("net.core.somaxconn", "128");
    root.remove("net.netfilter.nf_conntrack_max");
    // A directory where the file should be: the write fails whoever we are.
    let p = root.path("fs.file-max");
    fs::remove_file(&p).unwrap();
    fs::create_dir_all(&p).unwrap();
    let out = Command::new(repo().join("tuning/check"))
        .args(["--apply", "--root", root.arg()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unreadable key is a file error"
    );
    fs::remove_dir(&p).unwrap();
    root.set("fs.file-max", "1000");
    fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o444)).unwrap();
    let r = check(&["--apply", "--root", root.arg()]);
    assert!(r.event("SET", "net.core.somaxconn").is_some());
    assert_eq!(
        root.get("net.core.somaxconn"),
        sysctl_recs()["net.core.somaxconn"].value
    );
    assert!(r
        .event("MANUAL", "net.netfilter.nf_conntrack_max")
        .is_some());
    let running_as_root = fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if running_as_root {
        // root writes through file modes: the write succeeds.
        assert!(r.event("SET", "fs.file-max").is_some(), "{r:#?}");
    } else {
        let failed = r.event("FAILED", "fs.file-max").expect("FAILED line");
        assert!(failed[4].contains("root"), "{failed:?}");
        assert_eq!(r.code, 1);
    }
}

fn irq(root: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new("bash")
        .arg(repo().join("tuning/irq-affinity.sh"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap(), text)
}

/// A fake sysfs/proc: 8 CPUs, a NIC `eth9` with 4 MSI-X vectors and 4
/// rx/tx queue pairs.
fn fake_nic(name: &str) -> FakeRoot {
    let root = FakeRoot::new(name);
    let r = &root.0;
    fs::create_dir_all(r.join("sys/devices/system/cpu")).unwrap();
    fs::write(r.join("sys/devices/system/cpu/online"), "0-7\n").unwrap();
    let dev = r.join("sys/class/net/eth9");
    for irq in [41, 42, 43, 44] {
        fs::create_dir_all(dev.join("device/msi_irqs")).unwrap();
        fs::write(dev.join(format!("device/msi_irqs/{irq}")), "msix\n").unwrap();
        fs::create_dir_all(r.join(format!("proc/irq/{irq}"))).unwrap();
        fs::write(r.join(format!("proc/irq/{irq}/smp_affinity_list")), "0-7\n").unwrap();
    }
    for q in 0..4 {
        let rx = dev.join(format!("queues/rx-{q}"));
        let tx = dev.join(format!("queues/tx-{q}"));
        fs::create_dir_all(&rx).unwrap();
        fs::create_dir_all(&tx).unwrap();
        fs::write(rx.join("rps_cpus"), "00\n").unwrap();
        fs::write(rx.join("rps_flow_cnt"), "0\n").unwrap();
        fs::write(tx.join("xps_cpus"), "00\n").unwrap();
    }
    root.set("net.core.rps_sock_flow_entries", "0");
    root
}

#[test]
fn irq_affinity_dry_run_and_write_on_a_fake_root() {
    let root = fake_nic("irq");
    let args = [
        "--iface",
        "eth9",
        "--cores",
        "4",
        "--first-cpu",
        "2",
        "--dry-run",
    ];
    let (code, out) = irq(&root.0, &args);
    assert_eq!(code, 0, "{out}");
    let writes: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| l.strip_prefix("write "))
        .map(|l| {
            let (p, v) = l.split_once(' ').unwrap();
            (p.to_owned(), v.to_owned())
        })
        .collect();
    let want = |p: &str| {
        writes
            .iter()
            .find(|(q, _)| q.ends_with(p))
            .unwrap_or_else(|| panic!("no write to {p}: {out}"))
            .1
            .clone()
    };
    // IRQ j and queue j go to the node's core j: CPU first-cpu + j.
    for (j, irq) in [41, 42, 43, 44].iter().enumerate() {
        assert_eq!(
            want(&format!("/proc/irq/{irq}/smp_affinity_list")),
            (2 + j).to_string()
        );
    }
    assert_eq!(want("/queues/tx-0/xps_cpus"), "4"); // CPU 2
    assert_eq!(want("/queues/tx-3/xps_cpus"), "20"); // CPU 5
                                                     // Dry run: nothing written.
    let untouched = fs::read_to_string(root.0.join("proc/irq/41/smp_affinity_list")).unwrap();
    assert_eq!(untouched.trim(), "0-7");

    // For real (on the fake root), with RPS/RFS spreading over the node's CPUs.
    let (code, out) = irq(
        &root.0,
        &[
            "--iface",
            "eth9",
            "--cores",
            "4",
            "--first-cpu",
            "2",
            "--rps",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let read = |p: &str| {
        fs::read_to_string(root.0.join(p))
            .unwrap()
            .trim()
            .to_owned()
    };
    assert_eq!(read("proc/irq/43/smp_affinity_list"), "4");
    assert_eq!(read("sys/class/net/eth9/queues/tx-1/xps_cpus"), "8");
    assert_eq!(read("sys/class/net/eth9/queues/rx-0/rps_cpus"), "3c"); // CPUs 2-5
    let flows: u64 = read("proc/sys/net/core/rps_sock_flow_entries")
        .parse()
        .unwrap();
    assert!(flows > 0);
    let per_queue: u64 = read("sys/class/net/eth9/queues/rx-2/rps_flow_cnt")
        .parse()
        .unwrap();
    assert_eq!(per_queue * 4, flows);

    // Past CPU 31 the mask has 32-bit groups; core i wraps like the node's
    // (first-cpu + i) mod CPUs.
    fs::write(root.0.join("sys/devices/system/cpu/online"), "0-39\n").unwrap();
    let (code, out) = irq(
        &root.0,
        &[
            "--iface",
            "eth9",
            "--cores",
            "4",
            "--first-cpu",
            "38",
            "--dry-run",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("/queues/tx-0/xps_cpus 40,00000000\n"), "{out}");
    assert!(out.contains("/queues/tx-2/xps_cpus 1\n"), "{out}");
    assert!(out.contains("/proc/irq/44/smp_affinity_list 1\n"), "{out}");
    fs::write(root.0.join("sys/devices/system/cpu/online"), "0-7\n").unwrap();

    // More cores than CPUs, or a missing NIC: refused.
    let (code, _) = irq(
        &root.0,
        &["--iface", "eth9", "--cores", "9", "--first-cpu", "2"],
    );
    assert_ne!(code, 0);
    let (code, _) = irq(&root.0, &["--iface", "nope0", "--cores", "2", "--dry-run"]);
    assert_ne!(code, 0);
}

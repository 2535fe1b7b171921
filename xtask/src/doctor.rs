//! `cargo xtask doctor`: what is installed, how much disk is free, and how
//! fast the data disk makes a write durable.

use std::path::{Path, PathBuf};

use crate::error::{XtaskError, XtaskResult};
use crate::fsync_probe::{self, ProbeResult};
use crate::process::{repository_root, Invocation};
use crate::toolchain::{nightly_version, CARGO_FUZZ, MDBOOK};

/// Default number of measured write + sync iterations per probe.
pub const DEFAULT_ITERATIONS: usize = 200;
/// Below this much free space on the data disk, the doctor warns.
const FREE_BYTES_WARNING: u64 = 2 * 1024 * 1024 * 1024;

/// Options of `cargo xtask doctor`.
#[derive(Clone, Debug)]
pub struct DoctorOptions {
    /// Directory on the disk to probe; defaults to the repository root.
    pub directory: Option<PathBuf>,
    /// Measured iterations per probe.
    pub iterations: usize,
}

/// Runs every check and prints a report ending in a verdict line.
pub fn doctor(options: &DoctorOptions) -> XtaskResult<()> {
    let directory = match &options.directory {
        Some(directory) => directory.clone(),
        None => repository_root(),
    };
    if !directory.is_dir() {
        return Err(XtaskError::Missing(format!(
            "--dir {} is not a directory",
            directory.display()
        )));
    }
    let mut problems: Vec<String> = Vec::new();

    println!("== toolchain");
    let required = [
        ("rustc", Invocation::new("rustc").args(&["--version"])),
        ("cargo", Invocation::cargo(&["--version"])),
        ("clippy", Invocation::cargo(&["clippy", "--version"])),
        ("rustfmt", Invocation::new("rustfmt").args(&["--version"])),
    ];
    for (name, probe) in required {
        match probe.first_line_of_output() {
            Some(version) => println!("  {name:<12} {version}"),
            None => {
                println!("  {name:<12} NOT FOUND (run `cargo xtask setup`)");
                problems.push(format!("{name} missing"));
            }
        }
    }
    let optional = [
        (
            "nextest",
            Invocation::cargo(&["nextest", "--version"]).first_line_of_output(),
        ),
        ("mdbook", MDBOOK.installed_version()),
        ("cargo-fuzz", CARGO_FUZZ.installed_version()),
        ("nightly", nightly_version()),
    ];
    for (name, version) in optional {
        let shown = version.unwrap_or_else(|| "not found (optional)".to_string());
        println!("  {name:<12} {shown}");
    }

    println!("== data disk: {}", directory.display());
    let filesystem_type = filesystem_type(&directory);
    match disk_space(&directory) {
        Some(space) => {
            println!(
                "  filesystem   {} mounted on {} ({})",
                space.filesystem,
                space.mount_point,
                filesystem_type.as_deref().unwrap_or("type unknown")
            );
            println!(
                "  free         {} of {} ({}% used)",
                human_bytes(space.available_bytes),
                human_bytes(space.total_bytes),
                space.used_percent
            );
            if space.available_bytes < FREE_BYTES_WARNING {
                problems.push(format!(
                    "only {} free on the data disk",
                    human_bytes(space.available_bytes)
                ));
            }
        }
        None => println!("  free         unknown (`df` failed)"),
    }

    println!(
        "== fsync probe: {} x ({} B write + fdatasync), in a scratch directory under {}",
        options.iterations,
        fsync_probe::WRITE_BYTES,
        directory.display()
    );
    let append = fsync_probe::probe_append(&directory, options.iterations)?;
    print_probe("append", &append);
    let rewrite = fsync_probe::probe_rewrite(&directory, options.iterations)?;
    print_probe("rewrite", &rewrite);
    if append.latency_us_p50 > 0 {
        let ratio = rewrite.latency_us_p50 as f64 / append.latency_us_p50 as f64;
        println!(
            "  rewriting allocated blocks costs {:.0}% of an appending sync (p50), the gain preallocated segments can get",
            ratio * 100.0
        );
    }

    println!("== verdict");
    println!(
        "disk: {}",
        fsync_probe::verdict(&append, filesystem_type.as_deref())
    );
    if problems.is_empty() {
        println!("toolchain: OK");
    } else {
        println!("toolchain/disk problems: {}", problems.join("; "));
    }
    Ok(())
}

fn print_probe(label: &str, result: &ProbeResult) {
    println!(
        "  {label:<8} {:>8.0} syncs/s   p50 {:>6} µs   p99 {:>6} µs   max {:>6} µs   ({} syncs)",
        result.syncs_per_second,
        result.latency_us_p50,
        result.latency_us_p99,
        result.latency_us_max,
        result.iterations
    );
}

/// Free space as reported by `df -Pk`.
struct DiskSpace {
    filesystem: String,
    mount_point: String,
    total_bytes: u64,
    available_bytes: u64,
    used_percent: String,
}

fn disk_space(directory: &Path) -> Option<DiskSpace> {
    let text = Invocation::new("df")
        .args(&["-Pk", &directory.to_string_lossy()])
        .output_text()?;
    parse_df(&text)
}

/// Parses POSIX `df -Pk` output: a header line, then
/// `filesystem 1024-blocks used available capacity mount-point`.
fn parse_df(text: &str) -> Option<DiskSpace> {
    let line = text.lines().nth(1)?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 6 {
        return None;
    }
    let total_kib: u64 = fields[1].parse().ok()?;
    let available_kib: u64 = fields[3].parse().ok()?;
    Some(DiskSpace {
        filesystem: fields[0].to_string(),
        total_bytes: total_kib.saturating_mul(1024),
        available_bytes: available_kib.saturating_mul(1024),
        used_percent: fields[4].trim_end_matches('%').to_string(),
        mount_point: fields[5..].join(" "),
    })
}

/// The filesystem type name (`ext4`, `xfs`, `overlay`, `tmpfs`...), via `stat -f`.
fn filesystem_type(directory: &Path) -> Option<String> {
    Invocation::new("stat")
        .args(&["-f", "-c", "%T", &directory.to_string_lossy()])
        .first_line_of_output()
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_posix_df_output() {
        let text = "Filesystem     1024-blocks      Used Available Capacity Mounted on\n\
                    /dev/nvme0n1p1   263174212 200000000  63174212      77% /work data\n";
        let space = parse_df(text).expect("parses");
        assert_eq!(space.filesystem, "/dev/nvme0n1p1");
        assert_eq!(space.total_bytes, 263_174_212 * 1024);
        assert_eq!(space.available_bytes, 63_174_212 * 1024);
        assert_eq!(space.used_percent, "77");
        assert_eq!(space.mount_point, "/work data");
    }

    #[test]
    fn malformed_df_output_is_none_not_a_panic() {
        assert!(parse_df("").is_none());
        assert!(parse_df("header\nonly three fields").is_none());
        assert!(parse_df("header\nfs x y z 1% /").is_none());
    }

    #[test]
    fn human_readable_sizes() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}

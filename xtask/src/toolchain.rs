//! Making sure the tools a command needs are present: rustup components and
//! cargo-installed binaries. Everything here is idempotent: a tool that is
//! already there is left alone.

use crate::error::{XtaskError, XtaskResult};
use crate::process::{on_path, Invocation};

/// The rustup components every maintainer command relies on.
pub const REQUIRED_COMPONENTS: [&str; 2] = ["rustfmt", "clippy"];

/// Installs a rustup component unless it is already installed.
///
/// Without rustup (a distribution toolchain), the component's command is
/// probed instead, and its absence is a clear error.
pub fn ensure_component(component: &str) -> XtaskResult<()> {
    let probe = match component {
        "rustfmt" => Invocation::new("rustfmt").args(&["--version"]),
        "clippy" => Invocation::cargo(&["clippy", "--version"]),
        other => Invocation::new("rustup").args(&["which", other]),
    };
    if probe.first_line_of_output().is_some() {
        println!("ok: {component} is installed");
        return Ok(());
    }
    if !on_path("rustup") {
        return Err(XtaskError::Missing(format!(
            "{component} is not installed and rustup is not available to install it"
        )));
    }
    Invocation::new("rustup")
        .args(&["component", "add", component])
        .run()
}

/// A binary installed with `cargo install --locked <crate>`.
#[derive(Clone, Copy, Debug)]
pub struct CargoTool {
    /// The crate to install.
    pub crate_name: &'static str,
    /// How to ask the installed tool for its version (program and arguments).
    pub version_probe: &'static [&'static str],
}

/// mdBook, which builds the guide.
pub const MDBOOK: CargoTool = CargoTool {
    crate_name: "mdbook",
    version_probe: &["mdbook", "--version"],
};

/// cargo-fuzz, which drives the libFuzzer targets under `fuzz/`.
pub const CARGO_FUZZ: CargoTool = CargoTool {
    crate_name: "cargo-fuzz",
    version_probe: &["cargo", "fuzz", "--version"],
};

impl CargoTool {
    /// The tool's version line, or `None` when it is not installed.
    pub fn installed_version(&self) -> Option<String> {
        let (program, arguments) = self.version_probe.split_first()?;
        Invocation::new(program)
            .args(arguments)
            .first_line_of_output()
    }

    /// Installs the tool with `cargo install --locked` unless it is present.
    pub fn ensure_installed(&self) -> XtaskResult<()> {
        if let Some(version) = self.installed_version() {
            println!("ok: {version}");
            return Ok(());
        }
        println!(
            "{} is missing; installing it from crates.io",
            self.crate_name
        );
        Invocation::cargo(&["install", "--locked", self.crate_name]).run()?;
        match self.installed_version() {
            Some(version) => {
                println!("ok: {version}");
                Ok(())
            }
            None => Err(XtaskError::Missing(format!(
                "`cargo install --locked {}` succeeded but `{}` still does not run; is ~/.cargo/bin on PATH?",
                self.crate_name,
                self.version_probe.join(" ")
            ))),
        }
    }
}

/// The version line of the nightly toolchain, if rustup has one installed.
pub fn nightly_version() -> Option<String> {
    Invocation::new("rustc")
        .args(&["+nightly", "--version"])
        .first_line_of_output()
}

/// `cargo xtask setup`: components, mdBook, and a first build.
pub fn setup() -> XtaskResult<()> {
    for component in REQUIRED_COMPONENTS {
        ensure_component(component)?;
    }
    MDBOOK.ensure_installed()?;
    Invocation::cargo(&["build"]).run()?;
    println!("setup complete: try `cargo run --example quickstart` and `cargo test`");
    Ok(())
}

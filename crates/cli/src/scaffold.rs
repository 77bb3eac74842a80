//! `zkcoproc new`: writes a ready app from one of the examples of this repository, its SDK
//! dependencies pointing at a checkout (path) or at the repository's git URL.
//!
//! The templates are the examples themselves (`examples/hello`, `examples/erc20-balance`),
//! compiled into the binary, so a scaffold is always the code the test suite builds and proves,
//! with each crate's `Cargo.lock` (which pins what the image id depends on).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

/// Which example an app starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Template {
    /// `{"n": N}`: N rounds of SHA-256 in the circuit; receipts kept in the volume.
    Hello,
    /// An ERC-20 balance at a block, proven from the account and storage proofs under the root.
    Erc20,
}

/// One file of a template: its path in the app and its text.
struct File {
    path: &'static str,
    text: &'static str,
}

macro_rules! files {
    ($example:literal: $($path:literal),+ $(,)?) => {
        &[$(File {
            path: $path,
            text: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/", $example, "/", $path)),
        }),+]
    };
}

const HELLO: &[File] = files!("hello":
    "controller/Cargo.toml", "controller/Cargo.lock", "controller/src/lib.rs",
    "circuit/Cargo.toml", "circuit/Cargo.lock", "circuit/src/main.rs",
);
const ERC20: &[File] = files!("erc20-balance":
    "controller/Cargo.toml", "controller/Cargo.lock", "controller/src/lib.rs",
    "circuit/Cargo.toml", "circuit/Cargo.lock", "circuit/src/main.rs",
);

impl Template {
    /// The example directory's name, which its crates are named after.
    fn example(self) -> &'static str {
        match self {
            Template::Hello => "hello",
            Template::Erc20 => "erc20-balance",
        }
    }

    fn files(self) -> &'static [File] {
        match self {
            Template::Hello => HELLO,
            Template::Erc20 => ERC20,
        }
    }
}

/// Where the app's SDK crates come from.
pub(crate) enum Sdk {
    /// a checkout of this repository
    Path(PathBuf),
    /// the repository's git URL, at a revision (default: its default branch)
    Git { url: String, rev: Option<String> },
}

impl Sdk {
    /// The checkout this binary was built from, if it is still there.
    pub(crate) fn this_checkout() -> anyhow::Result<PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let root = std::fs::canonicalize(&root).ok().filter(|r| r.join("crates/guest/Cargo.toml").is_file());
        root.context(
            "the zkcoproc checkout this binary was built from is gone: give --sdk-path DIR (a checkout) \
             or --sdk-git URL",
        )
    }

    /// The manifest's dependency source for the SDK crate `krate` (a directory under `crates/`).
    fn source(&self, krate: &str) -> String {
        match self {
            Sdk::Path(root) => format!("path = {:?}", root.join("crates").join(krate).display().to_string()),
            Sdk::Git { url, rev: Some(rev) } => format!("git = {url:?}, rev = {rev:?}"),
            Sdk::Git { url, rev: None } => format!("git = {url:?}"),
        }
    }
}

/// A crate-name-safe app name: lower-case letters, digits and `-`, starting with a letter.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !ok {
        bail!(
            "`{name}` is not an app name: use lower-case letters, digits and `-`, starting with a letter \
             (its crates are named NAME-controller and NAME-circuit)"
        );
    }
    Ok(())
}

/// Writes the app `dir` (which must not exist or be empty) from `template`; returns the files
/// written, relative to `dir`.
pub(crate) fn new_app(dir: &Path, template: Template, sdk: &Sdk) -> anyhow::Result<Vec<String>> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{}: no app name at the end of the path", dir.display()))?;
    check_name(name)?;
    if dir.exists() && std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("{} already exists and is not empty; choose another name", dir.display());
    }
    if let Sdk::Path(root) = sdk {
        if !root.join("crates/guest/Cargo.toml").is_file() {
            bail!("{} is not a zkcoproc checkout (no crates/guest/Cargo.toml)", root.display());
        }
    }
    let example = template.example();
    let mut written = Vec::new();
    for file in template.files() {
        let mut text = file.text.replace(&format!("{example}-controller"), &format!("{name}-controller"));
        text = text.replace(&format!("{example}-circuit"), &format!("{name}-circuit"));
        text = text
            .replace(&format!("`examples/{example}`"), &format!("`{name}` (from the {example} template)"));
        if file.path.ends_with("Cargo.toml") {
            for krate in ["controller-sdk", "guest"] {
                text = text.replace(&format!("path = \"../../../crates/{krate}\""), &sdk.source(krate));
            }
            if text.contains("../../../") {
                bail!("template {example}: {} has a path this scaffold cannot rewrite", file.path);
            }
        }
        write(dir, file.path, &text)?;
        written.push(file.path.to_owned());
    }
    write(dir, ".gitignore", "target/\n")?;
    write(dir, "README.md", &readme(name, template, sdk))?;
    written.extend([".gitignore".to_owned(), "README.md".to_owned()]);
    Ok(written)
}

fn write(dir: &Path, path: &str, text: &str) -> anyhow::Result<()> {
    let path = dir.join(path);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

fn readme(name: &str, template: Template, sdk: &Sdk) -> String {
    let args = match template {
        Template::Hello => r#"{"n": 10}"#,
        Template::Erc20 => r#"{"domain": "ethereum", "block": 1, "token": "0x…", "holder": "0x…"}"#,
    };
    let source = match sdk {
        Sdk::Path(root) => format!("the zkcoproc checkout at `{}` (by path)", root.display()),
        Sdk::Git { url, rev } => {
            format!("`{url}`{} (by git)", rev.as_deref().map(|r| format!(" at `{r}`")).unwrap_or_default())
        }
    };
    format!(
        "# {name}\n\n\
         A zkcoproc app made by `zkcoproc new` from the `{example}` template. Its SDK crates\n\
         (`zkcoproc-controller-sdk`, `zkcoproc-guest`) come from {source}.\n\n\
         - `controller/`: the controller, a WebAssembly component (`wasm32-wasip2`): builds the\n  \
           circuit's witnesses from the task's JSON arguments and receives the finished proof.\n\
         - `circuit/`: the circuit, a RISC Zero guest: re-checks every witness and commits\n  \
           `root ‖ output`.\n\n\
         Each crate is a workspace of its own with its `Cargo.lock`: commit both locks, they are part\n\
         of what fixes the circuit's image id (so is the pinned Rust toolchain `zkcoproc build` uses).\n\n\
         ## Build, deploy, prove\n\n\
         ```sh\n\
         zkcoproc build {name}                       # writes {name}/target/zkcoproc/{{controller.wasm,circuit.bin}}\n\
         zkcoproc deploy {name}/target/zkcoproc      # prints the program id\n\
         zkcoproc prove PROGRAM_ID --args '{args}' --wait\n\
         zkcoproc verify --task TASK_ID --program PROGRAM_ID\n\
         ```\n\n\
         `zkcoproc serve --prover dev` runs a local service to try it on (fake receipts, no GPU or\n\
         long proofs); `--server URL` (or `ZKCOPROC_SERVER`) points the commands at another one.\n",
        example = template.example(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_make_crate_names() {
        for good in ["app", "my-app2", "a"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "App", "2app", "my_app", "app-", "a b", "../x"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_sdk_path_of_every_template_is_rewritten() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let sdk = Sdk::Git { url: "https://example.org/zkcoproc.git".into(), rev: Some("abc".into()) };
        for (template, dir) in [(Template::Hello, "h"), (Template::Erc20, "e")] {
            let app = tmp.path().join(dir);
            new_app(&app, template, &sdk).expect("scaffold");
            for krate in ["controller", "circuit"] {
                let manifest = std::fs::read_to_string(app.join(krate).join("Cargo.toml")).expect("manifest");
                assert!(!manifest.contains("path ="), "{manifest}");
                assert!(manifest.contains(r#"git = "https://example.org/zkcoproc.git", rev = "abc""#));
                assert!(manifest.contains(&format!("name = \"{dir}-{krate}\"")), "{manifest}");
                let lock = std::fs::read_to_string(app.join(krate).join("Cargo.lock")).expect("lock");
                assert!(lock.contains(&format!("name = \"{dir}-{krate}\"")));
            }
        }
        // An app is never written over another.
        let err = new_app(&tmp.path().join("h"), Template::Hello, &sdk).expect_err("overwrote");
        assert!(err.to_string().contains("not empty"), "{err}");
    }
}

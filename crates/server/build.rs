//! Embeds the web pages' static files: the npm packages pinned by `assets/package-lock.json`
//! (installed with `npm ci` when missing or older than the lockfile) and shopkeep's own files in
//! `assets/src`. Each file gets a content-hash name and a gzip copy; `src/web/assets.rs` serves
//! them from the generated table.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

/// (name in templates, file under `assets/`, content type)
const FILES: &[(&str, &str, &str)] = &[
    (
        "htmx.js",
        "node_modules/htmx.org/dist/htmx.min.js",
        "text/javascript; charset=utf-8",
    ),
    (
        "htmx-sse.js",
        "node_modules/htmx-ext-sse/dist/sse.min.js",
        "text/javascript; charset=utf-8",
    ),
    (
        "pico.css",
        "node_modules/@picocss/pico/css/pico.min.css",
        "text/css; charset=utf-8",
    ),
    ("app.css", "src/app.css", "text/css; charset=utf-8"),
    ("app.js", "src/app.js", "text/javascript; charset=utf-8"),
    ("favicon.svg", "src/favicon.svg", "image/svg+xml"),
];

fn main() {
    let dir = PathBuf::from(env("CARGO_MANIFEST_DIR")).join("assets");
    let out = PathBuf::from(env("OUT_DIR"));
    println!("cargo:rerun-if-changed=assets/package.json");
    println!("cargo:rerun-if-changed=assets/package-lock.json");
    println!("cargo:rerun-if-changed=assets/src");
    install_packages(&dir);

    let mut table = String::from("&[\n");
    for (name, rel, content_type) in FILES {
        let path = dir.join(rel);
        println!("cargo:rerun-if-changed={}", path.display());
        let body = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("reading web asset {}: {e}", path.display()));
        let hash = hex::encode(&Sha256::digest(&body)[..5]);
        let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
        let served = format!("{stem}.{hash}.{ext}");
        let mut gz = GzEncoder::new(Vec::new(), Compression::best());
        gz.write_all(&body).expect("gzip in memory");
        let gz = gz.finish().expect("gzip in memory");
        let raw_path = out.join(&served);
        let gz_path = out.join(format!("{served}.gz"));
        std::fs::write(&raw_path, &body).expect("writing OUT_DIR");
        std::fs::write(&gz_path, &gz).expect("writing OUT_DIR");
        let _ = writeln!(
            table,
            "    Asset {{ name: {name:?}, file: {served:?}, content_type: {content_type:?}, body: include_bytes!({raw:?}), gzip: include_bytes!({gzp:?}) }},",
            raw = raw_path.display().to_string(),
            gzp = gz_path.display().to_string(),
        );
    }
    table.push(']');
    std::fs::write(out.join("assets.rs"), table).expect("writing OUT_DIR");
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by cargo"))
}

/// `npm ci` when `node_modules` is missing or was installed from an older lockfile.
fn install_packages(dir: &Path) {
    let lock = modified(&dir.join("package-lock.json"));
    let installed = modified(&dir.join("node_modules/.package-lock.json"));
    if installed.is_some() && installed >= lock {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "`npm ci` in {} failed ({s}); the web pages need the packages its lockfile names",
            dir.display()
        ),
        Err(e) => {
            panic!("cannot run npm ({e}); install Node.js and npm to build shopkeep's web pages")
        }
    }
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

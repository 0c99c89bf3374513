//! Embeds the built browser app (`web/dist`, made by `npm run build` in `web/`) into the binary,
//! so that one file is a complete deployment. Without a build the server still compiles and
//! serves a page that says how to build the app.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/dist");
    // A directory makes cargo rescan everything below it.
    println!("cargo:rerun-if-changed={}", dist.display());
    let mut files = Vec::new();
    collect(&dist, &mut files);
    files.sort();
    let mut out = String::from("/// The files of `web/dist`: URL path and contents.\npub static ASSETS: &[(&str, &[u8])] = &[\n");
    for file in &files {
        let Ok(rel) = file.strip_prefix(&dist) else {
            continue;
        };
        let url = format!("/{}", rel.to_string_lossy().replace('\\', "/"));
        writeln!(
            out,
            "    ({url:?}, include_bytes!({:?})),",
            file.display().to_string()
        )
        .expect("writing to a string");
    }
    out.push_str("];\n");
    let target = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(target.join("web_assets.rs"), out).expect("writing web_assets.rs");
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, files);
        } else {
            files.push(path);
        }
    }
}

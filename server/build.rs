//! Embeds the built browser app (`web/dist`, made by `npm run build` in `web/`) into the binary,
//! so that one file is a complete deployment. Without a build the server still compiles and
//! serves a page that says how to build the app.
//!
//! Text files are also compressed here, once, with brotli at its highest quality and gzip at its
//! best, so that serving them compressed costs no CPU per request (`transport/web.rs` picks the
//! encoding a client accepts). A compressed form is kept only when it is smaller.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/dist");
    // A directory makes cargo rescan everything below it.
    println!("cargo:rerun-if-changed={}", dist.display());
    let target = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let compressed_dir = target.join("web_compressed");
    std::fs::create_dir_all(&compressed_dir).expect("creating the compressed assets' directory");
    let mut files = Vec::new();
    collect(&dist, &mut files);
    files.sort();
    let mut out = String::from(
        "/// The files of `web/dist`: URL path, contents, and their brotli and gzip forms when\n\
         /// those are smaller.\npub static ASSETS: &[Asset] = &[\n",
    );
    for (index, file) in files.iter().enumerate() {
        let Ok(rel) = file.strip_prefix(&dist) else {
            continue;
        };
        let url = format!("/{}", rel.to_string_lossy().replace('\\', "/"));
        let bytes = std::fs::read(file).expect("reading a file of web/dist");
        let mut forms = [None, None];
        if compressible(&url) {
            let brotli = compress_brotli(&bytes);
            let gzip = compress_gzip(&bytes);
            for (slot, (suffix, packed)) in forms.iter_mut().zip([("br", brotli), ("gz", gzip)]) {
                if packed.len() < bytes.len() {
                    let path = compressed_dir.join(format!("{index}.{suffix}"));
                    std::fs::write(&path, packed).expect("writing a compressed asset");
                    *slot = Some(path);
                }
            }
        }
        let form = |path: &Option<PathBuf>| match path {
            Some(path) => format!("Some(include_bytes!({:?}))", path.display().to_string()),
            None => "None".to_owned(),
        };
        writeln!(
            out,
            "    Asset {{ path: {url:?}, identity: include_bytes!({:?}), brotli: {}, gzip: {} }},",
            file.display().to_string(),
            form(&forms[0]),
            form(&forms[1]),
        )
        .expect("writing to a string");
    }
    out.push_str("];\n");
    std::fs::write(target.join("web_assets.rs"), out).expect("writing web_assets.rs");
}

/// Formats that are not already compressed.
fn compressible(url: &str) -> bool {
    matches!(
        url.rsplit('.').next(),
        Some("js" | "css" | "html" | "svg" | "json" | "map" | "txt")
    )
}

fn compress_brotli(bytes: &[u8]) -> Vec<u8> {
    let params = brotli::enc::BrotliEncoderParams {
        quality: 11,
        lgwin: 22,
        ..Default::default()
    };
    let mut out = Vec::new();
    brotli::BrotliCompress(&mut &bytes[..], &mut out, &params).expect("brotli into memory");
    out
}

fn compress_gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
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

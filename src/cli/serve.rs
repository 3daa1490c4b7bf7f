//! `wgrad serve`: the browser page (web/dist, built by web/build.sh) over HTTP on 127.0.0.1 only.
//! WebGPU needs a secure context, which http://127.0.0.1 is; wasm needs its MIME type.

use anyhow::{bail, Context};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Folder of static files to serve (web/dist after web/build.sh).
    dir: PathBuf,
    /// Port on 127.0.0.1 (0: any free port; the line printed at start says which).
    #[arg(long, default_value_t = 8000)]
    port: u16,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    if !a.dir.join("index.html").is_file() {
        bail!("{}: no index.html here (build the page first: web/build.sh)", a.dir.display());
    }
    let root = a.dir.canonicalize().with_context(|| format!("{}: cannot resolve", a.dir.display()))?;
    let server = tiny_http::Server::http(("127.0.0.1", a.port))
        .map_err(|e| anyhow::anyhow!("cannot listen on 127.0.0.1:{}: {e}", a.port))?;
    let addr = server.server_addr().to_ip().context("the server has no IP address")?;
    println!("serving {} at http://{addr}/ (Ctrl-C stops)", a.dir.display());
    std::io::stdout().flush()?;
    for req in server.incoming_requests() {
        let (status, body, kind) = respond(&root, req.method(), req.url());
        let header = tiny_http::Header::from_bytes("Content-Type", kind).expect("a valid header");
        let no_cache = tiny_http::Header::from_bytes("Cache-Control", "no-store").expect("a valid header");
        let resp =
            tiny_http::Response::from_data(body).with_status_code(status).with_header(header).with_header(no_cache);
        if let Err(e) = req.respond(resp) {
            eprintln!("serve: {e}");
        }
    }
    Ok(0)
}

/// The status, body and content type for a request of `url` under `root`: only GET and HEAD, only
/// plain relative names (no `..`, no hidden files), only regular files.
pub fn respond(root: &Path, method: &tiny_http::Method, url: &str) -> (u16, Vec<u8>, &'static str) {
    let text = "text/plain; charset=utf-8";
    if !matches!(method, tiny_http::Method::Get | tiny_http::Method::Head) {
        return (405, b"only GET and HEAD\n".to_vec(), text);
    }
    let path = url.split(['?', '#']).next().unwrap_or("/");
    let rel = match path.trim_start_matches('/') {
        "" => "index.html",
        p => p,
    };
    let plain = rel.split('/').all(|part| {
        !part.is_empty()
            && !part.starts_with('.')
            && part.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    });
    if !plain {
        return (404, format!("not found: {path}\n").into_bytes(), text);
    }
    let file = root.join(rel);
    match std::fs::metadata(&file) {
        Ok(m) if m.is_file() => match std::fs::read(&file) {
            Ok(bytes) => (200, bytes, content_type(rel)),
            Err(e) => (500, format!("cannot read {rel}: {e}\n").into_bytes(), text),
        },
        _ => (404, format!("not found: {path}\n").into_bytes(), text),
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_plain_names_only() {
        let dir = std::env::temp_dir().join(format!("wgrad-serve-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("index.html"), "<p>hi</p>").unwrap();
        std::fs::write(dir.join("a.wasm"), [0u8, 97, 115, 109]).unwrap();
        std::fs::write(dir.join(".secret"), "no").unwrap();
        let get = tiny_http::Method::Get;
        assert_eq!(respond(&dir, &get, "/"), (200, b"<p>hi</p>".to_vec(), "text/html; charset=utf-8"));
        assert_eq!(respond(&dir, &get, "/a.wasm?x=1").2, "application/wasm");
        for bad in ["/../etc/passwd", "/.secret", "/sub", "/sub/../index.html", "//etc/passwd", "/a%2e%2e"] {
            assert_eq!(respond(&dir, &get, bad).0, 404, "{bad}");
        }
        assert_eq!(respond(&dir, &tiny_http::Method::Post, "/").0, 405);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

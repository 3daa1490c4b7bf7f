//! The download paths against HTTP servers on 127.0.0.1 that the tests start. CIFAR-10's archive: a
//! good one lands in place; a corrupted one (MD5 mismatch), a truncated transfer and an archive
//! without the expected folder leave nothing behind; a re-run then succeeds. Fashion-MNIST's
//! files: each from the first mirror that serves it whole; none served leaves nothing.

mod common;
use common::*;
use md5::{Digest, Md5};
use std::io::{Read, Write};
use std::net::TcpListener;
use wgrad::data::download::{fetch_and_extract, fetch_files};

/// Serves `body` to each of `requests` connections (claiming `claimed` bytes); returns the URL.
fn serve(body: Vec<u8>, claimed: usize, requests: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/cifar-10-python.tar.gz", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let mut s = stream.unwrap();
            let mut req = [0u8; 4096];
            let _ = s.read(&mut req);
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {claimed}\r\nContent-Type: application/gzip\r\nConnection: close\r\n\r\n");
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    url
}

/// A .tar.gz holding `folder`/test_batch (a few bytes) and `folder`/data_batch_1.
fn archive(folder: &str) -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for (name, data) in [("test_batch", b"test data".as_slice()), ("data_batch_1", b"train data".as_slice())] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, format!("{folder}/{name}"), data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

fn md5_hex(b: &[u8]) -> String {
    Md5::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

fn leftovers(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn a_good_archive_is_verified_extracted_and_moved_into_place() {
    let body = archive("cifar-10-batches-py");
    let url = serve(body.clone(), body.len(), 1);
    let dir = tempdir();
    let dest = fetch_and_extract(&url, &md5_hex(&body), &dir, "cifar-10-batches-py").unwrap();
    assert_eq!(std::fs::read(dest.join("test_batch")).unwrap(), b"test data");
    assert_eq!(leftovers(&dir), vec!["cifar-10-batches-py".to_string()], "only the dataset folder remains");
}

#[test]
fn a_corrupted_archive_leaves_nothing_and_a_rerun_succeeds() {
    let good = archive("cifar-10-batches-py");
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    let dir = tempdir();
    let e = fetch_and_extract(&serve(bad.clone(), bad.len(), 1), &md5_hex(&good), &dir, "cifar-10-batches-py")
        .unwrap_err()
        .to_string();
    assert!(e.contains("MD5 mismatch") && e.contains(&md5_hex(&good)) && e.contains(&md5_hex(&bad)), "{e}");
    assert!(leftovers(&dir).is_empty(), "a failed download must leave nothing: {:?}", leftovers(&dir));
    // A killed earlier run's temporary files are cleaned up by the next run, which succeeds; those
    // of a process still running (pid 1) are its own and stay.
    std::fs::write(dir.join(".wgrad-download-4000000000.part"), b"half").unwrap();
    std::fs::create_dir(dir.join(".wgrad-extract-4000000000")).unwrap();
    std::fs::write(dir.join(".wgrad-download-1.part"), b"live").unwrap();
    fetch_and_extract(&serve(good.clone(), good.len(), 1), &md5_hex(&good), &dir, "cifar-10-batches-py").unwrap();
    let mut left = leftovers(&dir);
    left.sort();
    assert_eq!(left, [".wgrad-download-1.part", "cifar-10-batches-py"]);
}

#[test]
fn a_truncated_transfer_leaves_nothing() {
    let body = archive("cifar-10-batches-py");
    let dir = tempdir();
    let url = serve(body[..body.len() / 2].to_vec(), body.len(), 1);
    let e = fetch_and_extract(&url, &md5_hex(&body), &dir, "cifar-10-batches-py").unwrap_err().to_string();
    assert!(e.contains("downloading"), "{e}");
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
}

#[test]
fn an_unreachable_server_is_named_once_with_the_folder() {
    // A port nothing listens on any more: the connection is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/cifar-10-python.tar.gz");
    let dir = tempdir();
    let e = fetch_and_extract(&url, &md5_hex(b""), &dir, "cifar-10-batches-py").unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}: downloading {url}: ", dir.display())), "{e}");
    assert_eq!(e.matches(&url).count(), 1, "{e}");
    assert!(!e.contains(".part"), "{e}");
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
}

#[test]
fn an_archive_without_the_folder_leaves_nothing() {
    let body = archive("something-else");
    let dir = tempdir();
    let e = fetch_and_extract(&serve(body.clone(), body.len(), 1), &md5_hex(&body), &dir, "cifar-10-batches-py")
        .unwrap_err()
        .to_string();
    assert!(e.contains("no folder cifar-10-batches-py/"), "{e}");
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
}

/// Serves each of `files` (path, body) at /path and 404 to anything else, for `requests`
/// connections; returns the URL prefix.
fn serve_files(files: Vec<(String, Vec<u8>)>, requests: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let mut s = stream.unwrap();
            let mut req = [0u8; 4096];
            let n = s.read(&mut req).unwrap_or(0);
            let line = String::from_utf8_lossy(&req[..n]).lines().next().unwrap_or("").to_string();
            let path = line.split(' ').nth(1).unwrap_or("").trim_start_matches('/').to_string();
            match files.iter().find(|(p, _)| *p == path) {
                Some((_, body)) => {
                    let head =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                    let _ = s.write_all(head.as_bytes());
                    let _ = s.write_all(body);
                }
                None => {
                    let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                }
            }
        }
    });
    url
}

/// Four files as Fashion-MNIST's are named, with their MD5s.
fn four_files() -> Vec<(String, Vec<u8>, String)> {
    [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    .iter()
    .map(|n| (n.to_string(), format!("bytes of {n}").into_bytes(), md5_hex(format!("bytes of {n}").as_bytes())))
    .collect()
}

#[test]
fn each_file_comes_from_the_first_mirror_that_serves_it_whole() {
    let files = four_files();
    let names: Vec<(&str, &str)> = files.iter().map(|(n, _, m)| (n.as_str(), m.as_str())).collect();
    // Mirror 1 refuses connections, mirror 2 lacks one file (404) and corrupts another, mirror 3
    // has them all.
    let refused =
        format!("http://127.0.0.1:{}/", TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
    let partial: Vec<(String, Vec<u8>)> = files
        .iter()
        .skip(1)
        .map(|(n, b, _)| (n.clone(), if n.starts_with("t10k-images") { b"corrupt".to_vec() } else { b.clone() }))
        .collect();
    let second = serve_files(partial, 4);
    let third = serve_files(files.iter().map(|(n, b, _)| (n.clone(), b.clone())).collect(), 2);
    let dir = tempdir();
    let dest = fetch_files(&[&refused, &second, &third], &names, &dir, "fashion-mnist").unwrap();
    for (n, b, _) in &files {
        assert_eq!(&std::fs::read(dest.join(n)).unwrap(), b, "{n}");
    }
    assert_eq!(leftovers(&dir), ["fashion-mnist"], "only the dataset folder remains");
    assert_eq!(leftovers(&dest).len(), 4);
}

#[test]
fn a_file_no_mirror_serves_whole_leaves_nothing_and_names_each_failure() {
    let files = four_files();
    let names: Vec<(&str, &str)> = files.iter().map(|(n, _, m)| (n.as_str(), m.as_str())).collect();
    // The third file is corrupt on the only mirror: the first two were fetched, then thrown away.
    let served: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(n, b, _)| (n.clone(), if n.starts_with("t10k-images") { b"bad".to_vec() } else { b.clone() }))
        .collect();
    let refused =
        format!("http://127.0.0.1:{}/", TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
    let url = serve_files(served, 3);
    let dir = tempdir();
    let e = fetch_files(&[&url, &refused], &names, &dir, "fashion-mnist").unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}: no mirror served t10k-images-idx3-ubyte.gz: ", dir.display())), "{e}");
    assert!(e.contains("MD5 mismatch") && e.contains(&refused), "{e}");
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
}

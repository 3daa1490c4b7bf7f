//! The CIFAR-10 download path against an HTTP server on 127.0.0.1 that the test starts: a good
//! archive lands in place; a corrupted one (MD5 mismatch), a truncated transfer and an archive
//! without the expected folder leave nothing behind; a re-run then succeeds.

mod common;
use common::*;
use md5::{Digest, Md5};
use std::io::{Read, Write};
use std::net::TcpListener;
use wgrad::data::download::fetch_and_extract;

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
    // A killed earlier run's temporary files are cleaned up by the next run, which succeeds.
    std::fs::write(dir.join(".wgrad-download-1.part"), b"half").unwrap();
    std::fs::create_dir(dir.join(".wgrad-extract-1")).unwrap();
    fetch_and_extract(&serve(good.clone(), good.len(), 1), &md5_hex(&good), &dir, "cifar-10-batches-py").unwrap();
    assert_eq!(leftovers(&dir), vec!["cifar-10-batches-py".to_string()]);
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

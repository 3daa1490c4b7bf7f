//! Progress for long loops: a bar on a terminal; where stderr is not a terminal (a log, CI, `| cat`),
//! a plain line at every tenth of the work and at least every 30 s, as Keras's `verbose=2` does.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

pub struct Progress {
    label: String,
    total: u64,
    bar: Option<ProgressBar>,
    started: Instant,
    last_line: Instant,
    next_tenth: u64,
}

/// Seconds as `1h02m`, `3m05s` or `42s`.
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

impl Progress {
    /// Progress over `total` units (steps, batches) starting at `start`.
    pub fn new(label: &str, total: u64, start: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_prefix(label.to_string());
            bar.set_position(start);
            bar
        });
        let next_tenth = (start * 10 / total.max(1) + 1).min(10);
        Progress { label: label.into(), total, bar, started: Instant::now(), last_line: Instant::now(), next_tenth }
    }

    /// Sets the position; `msg` says how it goes (loss, img/s), called only when shown.
    pub fn set(&mut self, pos: u64, done_here: u64, msg: impl FnOnce() -> String) {
        if let Some(b) = &self.bar {
            b.set_message(msg());
            b.set_position(pos);
            return;
        }
        let tenth_reached = pos * 10 >= self.next_tenth * self.total.max(1);
        if tenth_reached || self.last_line.elapsed() >= Duration::from_secs(30) {
            while self.next_tenth <= 10 && pos * 10 >= self.next_tenth * self.total.max(1) {
                self.next_tenth += 1;
            }
            let elapsed = self.started.elapsed().as_secs_f64();
            let left = self.total.saturating_sub(pos);
            let eta = if done_here > 0 { elapsed / done_here as f64 * left as f64 } else { 0.0 };
            eprintln!(
                "{} {pos}/{} ({:.0}%): {}, eta {}",
                self.label,
                self.total,
                100.0 * pos as f64 / self.total.max(1) as f64,
                msg(),
                duration(eta)
            );
            self.last_line = Instant::now();
        }
    }

    /// Prints a line without breaking the bar.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| println!("{line}")),
            None => println!("{line}"),
        }
    }

    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

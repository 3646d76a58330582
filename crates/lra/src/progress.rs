//! Progress bars on standard error, hidden under `--quiet`.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar counting `total` units, `done` of them already, labelled by `message`.
pub fn bar(total: u64, done: u64, message: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total).with_position(done);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}",
        )
        .expect("valid progress template"),
    );
    bar.set_message(message.to_string());
    bar
}

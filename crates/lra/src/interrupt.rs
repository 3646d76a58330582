//! SIGTERM and SIGINT (what Slurm sends at preemption or the time limit, and Ctrl-C) ask the
//! training loop to checkpoint at the next step boundary and exit with [`EXIT_INTERRUPTED`];
//! a second Ctrl-C while the first is pending exits at once, as an impatient user expects (a
//! repeated SIGTERM, which Slurm and the job script may both send, still waits for the
//! checkpoint).

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;

/// Exit status of a run or sweep that stopped on a signal after writing its checkpoint:
/// `EX_TEMPFAIL` of sysexits.h, "try again later". The Slurm script of `lra sweep --slurm`
/// re-queues the job on it.
pub const EXIT_INTERRUPTED: i32 = 75;

/// Exit status of a second SIGINT before the first was handled (no checkpoint written).
const EXIT_FORCED: i32 = 130;

fn flag() -> &'static Arc<AtomicBool> {
    static REQUESTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    REQUESTED.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Installs the handlers (once per process; later calls do nothing new); `lra run`, `lra pretrain` and `lra
/// sweep` do. Without it (other commands, the library used from tests), signals keep their
/// default action.
pub fn install() -> Result<()> {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    // Registered first, so it sees the flag as it was before this signal set it.
    flag::register_conditional_shutdown(SIGINT, EXIT_FORCED, Arc::clone(flag()))
        .context("cannot install the signal handlers")?;
    for signal in [SIGTERM, SIGINT] {
        flag::register(signal, Arc::clone(flag())).context("cannot install the signal handlers")?;
    }
    let _ = INSTALLED.set(());
    Ok(())
}

/// Whether SIGTERM or SIGINT arrived: stop at the next step boundary.
pub fn requested() -> bool {
    flag().load(Ordering::Relaxed)
}

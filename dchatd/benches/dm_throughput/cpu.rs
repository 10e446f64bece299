//! What the daemons and the machine spend in CPU during a burst.

use super::*;
use crate::common::{machine_busy_s, process_cpu_s};

/// CPU time spent during a burst by some nodes' daemons and by the whole
/// machine: what one DM costs where, and so how many the cores could carry.
pub(super) struct CpuUse {
    names: Vec<&'static str>,
    pids: Vec<Option<u32>>,
    at_start: Vec<Option<f64>>,
    machine_at_start: Option<f64>,
    t0: Instant,
}

impl CpuUse {
    pub(super) fn start(net: &Testnet, names: &[&'static str]) -> CpuUse {
        let pids: Vec<Option<u32>> = names.iter().map(|n| net.pid(n)).collect();
        CpuUse {
            names: names.to_vec(),
            at_start: pids.iter().map(|p| p.and_then(process_cpu_s)).collect(),
            pids,
            machine_at_start: machine_busy_s(),
            t0: Instant::now(),
        }
    }

    /// The CPU seconds used since the start, per node and by the machine,
    /// and the wall time.
    pub(super) fn stop(self) -> CpuSpent {
        let per_node = self
            .pids
            .iter()
            .zip(&self.at_start)
            .map(|(pid, start)| Some(pid.and_then(process_cpu_s)? - (*start)?))
            .collect();
        CpuSpent {
            names: self.names,
            per_node,
            machine: machine_busy_s()
                .zip(self.machine_at_start)
                .map(|(end, start)| end - start),
            wall_s: self.t0.elapsed().as_secs_f64(),
        }
    }
}

pub(super) struct CpuSpent {
    names: Vec<&'static str>,
    per_node: Vec<Option<f64>>,
    machine: Option<f64>,
    wall_s: f64,
}

impl CpuSpent {
    pub(super) fn report(&self, dms: usize) {
        let per_dm_us = |s: f64| s * 1e6 / dms.max(1) as f64;
        let nodes: Vec<String> = self
            .names
            .iter()
            .zip(&self.per_node)
            .map(|(name, s)| match s {
                Some(s) => format!("{name} {:.0} µs", per_dm_us(*s)),
                None => format!("{name} ?"),
            })
            .collect();
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        match self.machine {
            Some(m) => println!(
                "  CPU per DM: {}; whole machine {:.0} µs, busy {:.0} % of {cores} cores, so at most ~{:.0} DMs/s here",
                nodes.join(", "),
                per_dm_us(m),
                100.0 * m / (self.wall_s * cores as f64),
                cores as f64 * 1e6 / per_dm_us(m)
            ),
            None => println!("  CPU per DM: {}", nodes.join(", ")),
        }
    }
}

//! The integer variables that a scan's role values are written over (lowering writes them,
//! the templates bind them). Variables below [`COUNT`] are axis variables; a template
//! numbers its own from there.

use ssmc_loops::Var;

/// Batch row.
pub const BATCH: Var = Var(0);
/// Time step (the layer's time index, already reversed for reverse scans).
pub const TIME: Var = Var(1);
/// Head or channel.
pub const HEAD: Var = Var(2);
/// Element of a head.
pub const HEADDIM: Var = Var(3);
/// Group of the head.
pub const GROUP: Var = Var(4);
/// First state index of the current vector of lanes.
pub const STATE: Var = Var(5);
/// Variables below this are axis variables.
pub const COUNT: u32 = 6;

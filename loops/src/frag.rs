//! Matrix fragments: tiles of a warp-wide matrix multiply-accumulate, spread over the
//! warp's registers (a tensor-core operation on the GPU). The type is defined so that the
//! IR's shape stays put when the tensor-core schedules arrive; no backend lowers these
//! statements yet, and each refuses them by name.

use crate::{Elem, Index, Var};

/// Which operand of `acc += a * b` a fragment is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FragRole {
    /// `a`, m x k.
    A,
    /// `b`, k x n.
    B,
    /// The accumulator, m x n, always f32.
    Acc,
}

/// The type of a fragment: its role in an `m x n x k` multiply-accumulate and the element
/// type of its operands (`mma.sync` m16n8k16 takes bf16 `a`, `b` and an f32 accumulator).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragType {
    /// Its operand.
    pub role: FragRole,
    /// Rows of the product.
    pub m: u32,
    /// Columns of the product.
    pub n: u32,
    /// The shared dimension.
    pub k: u32,
    /// Element type (`F32` for an accumulator).
    pub elem: Elem,
}

/// The statements over fragments. Every thread of the warp runs them together.
#[derive(Clone, Debug, PartialEq)]
pub enum FragStmt {
    /// Declares fragment `var` of type `ty`, zero (accumulators) or loaded from a row-major
    /// tile of `buf` at `index` with `ld` elements between rows.
    Let {
        /// The fragment variable.
        var: Var,
        /// Its type.
        ty: FragType,
        /// Where its first value comes from; zero when `None`.
        load: Option<(usize, Index, Index)>,
    },
    /// `acc += a * b`: the types must agree in m, n and k, `acc` an accumulator.
    Mma {
        /// The accumulator.
        acc: Var,
        /// The m x k operand.
        a: Var,
        /// The k x n operand.
        b: Var,
    },
    /// Stores an accumulator into a row-major tile of `buf` at `index`, `ld` elements
    /// between rows.
    Store {
        /// The accumulator.
        var: Var,
        /// Buffer position.
        buf: usize,
        /// Element index of the tile's first element.
        index: Index,
        /// Elements between rows.
        ld: Index,
    },
}

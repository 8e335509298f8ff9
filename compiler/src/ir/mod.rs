//! The IR: a petgraph graph of primitive ops behind typed ids.

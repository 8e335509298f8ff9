//! Lowering: elaborates the AST (blocks, if, repeat) into the IR.

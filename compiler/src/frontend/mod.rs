//! Front-ends: YAML files and `network!` tokens, both to `ast::Module`.

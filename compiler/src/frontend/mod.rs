//! Front-ends: YAML files and `network!` tokens, both to [`ast::Module`].
//!
//! [`parse_yaml`] reads a model file ([`yaml`], on the located tree of
//! `yaml_tree`); [`parse_tokens`] reads the tokens of a `network!`
//! invocation ([`tokens`]). Both send every expression through the one
//! `syn`-based converter (`expr`), so the two syntaxes share one
//! expression grammar. Errors use the codes of [`codes`] (K0001–K0099).

pub mod codes;
mod expr;
pub mod print;
pub mod tokens;
pub mod yaml;
mod yaml_tree;

use crate::ast;
use crate::diag::Diagnostics;

/// Parses a YAML model file. Every node gets `Loc::Text` (1-based line/col,
/// byte offset/len).
///
/// Returns every error of the file when there is any; see
/// [`yaml::parse`] for the partial result as well.
pub fn parse_yaml(source: &str) -> Result<ast::Module, Diagnostics> {
    let (module, diags) = yaml::parse(source);
    if diags.has_errors() {
        Err(diags)
    } else {
        Ok(module)
    }
}

/// Parses the tokens of a `network!` invocation (not the file form). Every
/// node gets `Loc::Macro(span)`.
///
/// Returns every error found when there is any; see [`tokens::parse`] for
/// the partial result as well.
pub fn parse_tokens(tokens: proc_macro2::TokenStream) -> Result<ast::Module, Diagnostics> {
    let parsed = tokens::parse(tokens);
    if parsed.diagnostics.has_errors() {
        Err(parsed.diagnostics)
    } else {
        Ok(parsed.module)
    }
}

#[cfg(test)]
mod tests;

//! How deeply a SQL text's expressions can nest, measured on its tokens
//! before anything builds a tree of it.
//!
//! Why not on the parsed tree: sqlparser parses a left-deep chain such as
//! `1+1+…+1` in a loop, so its recursion limit never sees it, but the tree
//! it builds is as deep as the chain is long, and everything after the
//! parser — DataFusion's planner and optimiser, `Display`, even the tree's
//! `Drop` — walks it recursively: 2,000 terms overflowed a worker thread's
//! stack and aborted the process. The tokenizer is a loop, so measuring
//! the tokens costs one linear pass and no stack.
//!
//! The measure is an upper bound of the tree's depth: inside each pair of
//! parentheses, the number of binary operators in a row (an `a + b * c`
//! chain of `n` operators nests at most `n` deep), plus the depth at which
//! the parentheses opened. `CASE … END` nests like a pair of parentheses,
//! and a subscript (`[…]`) is an operator on what precedes it as well as a
//! nesting (`x[1][1]…` is as deep as it is long). A comma or a clause
//! keyword (`SELECT`, `FROM`, `WHERE`, `WHEN`, …) starts a new chain: a
//! list of 10,000 values is wide, not deep.

use lance::deps::datafusion::sql::sqlparser::dialect::GenericDialect;
use lance::deps::datafusion::sql::sqlparser::keywords::Keyword;
use lance::deps::datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

/// The measured depth, or the tokenizer's complaint.
pub fn expression_depth(sql: &str) -> Result<usize, String> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize()
        .map_err(|e| e.to_string())?;
    // One (depth where the level opened, operators in the current chain)
    // per open parenthesis.
    let mut levels: Vec<(usize, usize)> = vec![(0, 0)];
    let mut deepest = 0;
    for token in &tokens {
        match token {
            Token::LBracket => {
                // A subscript applies to the expression before it.
                if let Some(level) = levels.last_mut() {
                    level.1 += 1;
                    deepest = deepest.max(level.0 + level.1);
                }
                let (base, chain) = *levels.last().unwrap_or(&(0, 0));
                levels.push((base + chain + 1, 0));
            }
            Token::LParen => {
                let (base, chain) = *levels.last().unwrap_or(&(0, 0));
                levels.push((base + chain + 1, 0));
            }
            Token::Word(word) if word.keyword == Keyword::CASE => {
                let (base, chain) = *levels.last().unwrap_or(&(0, 0));
                levels.push((base + chain + 1, 0));
            }
            Token::RParen | Token::RBracket => {
                if levels.len() > 1 {
                    levels.pop();
                }
            }
            Token::Word(word) if word.keyword == Keyword::END => {
                if levels.len() > 1 {
                    levels.pop();
                }
            }
            Token::Comma | Token::SemiColon => {
                if let Some(level) = levels.last_mut() {
                    level.1 = 0;
                }
            }
            Token::Word(word) if starts_a_chain(word.keyword) => {
                if let Some(level) = levels.last_mut() {
                    level.1 = 0;
                }
            }
            token if is_operator(token) => {
                if let Some(level) = levels.last_mut() {
                    level.1 += 1;
                    deepest = deepest.max(level.0 + level.1);
                }
            }
            _ => {}
        }
        deepest = deepest.max(levels.len() - 1);
    }
    Ok(deepest)
}

fn is_operator(token: &Token) -> bool {
    match token {
        Token::Plus
        | Token::Minus
        | Token::Mul
        | Token::Div
        | Token::DuckIntDiv
        | Token::Mod
        | Token::StringConcat
        | Token::Eq
        | Token::DoubleEq
        | Token::Neq
        | Token::Lt
        | Token::Gt
        | Token::LtEq
        | Token::GtEq
        | Token::Spaceship
        | Token::Caret
        | Token::Ampersand
        | Token::Pipe
        | Token::ShiftLeft
        | Token::ShiftRight
        | Token::Tilde
        | Token::ExclamationMark
        | Token::Arrow
        | Token::LongArrow
        | Token::DoubleColon => true,
        Token::Word(word) => matches!(
            word.keyword,
            Keyword::AND
                | Keyword::OR
                | Keyword::XOR
                | Keyword::NOT
                | Keyword::LIKE
                | Keyword::ILIKE
                | Keyword::SIMILAR
                | Keyword::IS
                | Keyword::IN
                | Keyword::BETWEEN
                | Keyword::DIV
                | Keyword::COLLATE
                | Keyword::AT
                | Keyword::OVERLAPS
        ),
        _ => false,
    }
}

/// Keywords after which a new expression starts.
fn starts_a_chain(keyword: Keyword) -> bool {
    matches!(
        keyword,
        Keyword::SELECT
            | Keyword::FROM
            | Keyword::WHERE
            | Keyword::GROUP
            | Keyword::BY
            | Keyword::HAVING
            | Keyword::ORDER
            | Keyword::LIMIT
            | Keyword::OFFSET
            | Keyword::ON
            | Keyword::USING
            | Keyword::JOIN
            | Keyword::UNION
            | Keyword::INTERSECT
            | Keyword::EXCEPT
            | Keyword::WITH
            | Keyword::AS
            | Keyword::WHEN
            | Keyword::THEN
            | Keyword::ELSE
            | Keyword::WINDOW
            | Keyword::QUALIFY
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(terms: usize) -> String {
        format!("SELECT {}", vec!["1"; terms].join("+"))
    }

    #[test]
    fn a_chain_is_as_deep_as_it_is_long() {
        assert_eq!(expression_depth("SELECT 1").unwrap(), 0);
        assert_eq!(expression_depth(&chain(2)).unwrap(), 1);
        assert_eq!(expression_depth(&chain(2_000)).unwrap(), 1_999);
        // Each level opens below the operators before it: 1, +, 3, *, 5, -.
        assert_eq!(expression_depth("SELECT (1 + (2 * (3 - 4)))").unwrap(), 6);
    }

    #[test]
    fn lists_and_clauses_are_wide_not_deep() {
        let list = format!(
            "SELECT a FROM t WHERE a IN ({})",
            (0..5_000)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert!(expression_depth(&list).unwrap() <= 3);
        let wide = format!(
            "SELECT {} FROM t",
            (0..1_000)
                .map(|i| format!("a + {i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert_eq!(expression_depth(&wide).unwrap(), 1);
        let query = "SELECT role, count(*) FROM workers WHERE state = 'TX' AND years > 3 \
                     GROUP BY role ORDER BY count(*) DESC LIMIT 5";
        assert!(expression_depth(query).unwrap() <= 4);
    }

    #[test]
    fn case_and_subscripts_nest() {
        let cases = format!("SELECT 1{}", " + CASE WHEN 1 THEN 1 END".repeat(1_000));
        assert!(expression_depth(&cases).unwrap() >= 1_000);
        let subscripts = format!("SELECT x{} FROM t", "[1]".repeat(1_000));
        assert!(expression_depth(&subscripts).unwrap() >= 1_000);
        let one_case = "SELECT CASE WHEN a > 1 THEN 'x' ELSE 'y' END FROM t";
        assert!(expression_depth(one_case).unwrap() <= 3);
    }

    #[test]
    fn nesting_inside_a_chain_adds_up() {
        // The parentheses open after two operators of the outer chain.
        assert_eq!(expression_depth("SELECT 1 + 2 + (3 + 4 + 5)").unwrap(), 5);
        let unbalanced = "SELECT ((((1";
        assert_eq!(expression_depth(unbalanced).unwrap(), 4);
    }
}

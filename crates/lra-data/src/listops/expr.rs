//! The ListOps expression tree: evaluation, the official string form, and building from token ids.

use super::{Token, VOCAB, column_of_token, token_of_id};

/// Deepest operator nesting [`super::parse`] accepts and [`super::generate`] may produce.
///
/// Evaluating, printing and dropping an [`Expr`] recurse once per level; the bound keeps that far
/// from the stack limit whatever a data file contains. The official data nests at most 9 deep.
pub const MAX_NESTING: usize = 1000;

/// A ListOps operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Smallest argument; token `[MIN`.
    Min,
    /// Largest argument; token `[MAX`.
    Max,
    /// Median, with the mean of the two middle values rounded down for an even count; token `[MED`.
    Med,
    /// Sum modulo 10; token `[SM`.
    Sm,
}

impl Op {
    /// All operators, in the order of their token ids.
    pub const ALL: [Op; 4] = [Op::Min, Op::Max, Op::Med, Op::Sm];

    /// The token that opens this operator's argument list, e.g. `"[MIN"`.
    pub fn token(self) -> &'static str {
        match self {
            Op::Min => "[MIN",
            Op::Max => "[MAX",
            Op::Med => "[MED",
            Op::Sm => "[SM",
        }
    }

    /// This operator applied to `values`, exactly as the official `to_value` computes it
    /// (`int(np.median(..))` for [`Op::Med`]). No arguments give 0.
    pub fn apply(self, values: &[u8]) -> u8 {
        self.apply_to_iter(values.iter().copied())
    }

    /// [`Op::apply`] on values computed on the fly; only the median needs them stored.
    fn apply_to_iter(self, values: impl Iterator<Item = u8>) -> u8 {
        match self {
            Op::Min => values.min().unwrap_or(0),
            Op::Max => values.max().unwrap_or(0),
            Op::Sm => (values.map(u64::from).sum::<u64>() % 10) as u8,
            Op::Med => median(&mut values.collect::<Vec<u8>>()),
        }
    }

    /// [`Op::apply`] for values that may be reordered, which spares the median a copy.
    pub(crate) fn apply_reordering(self, values: &mut [u8]) -> u8 {
        match self {
            Op::Med => median(values),
            _ => self.apply(values),
        }
    }
}

/// `int(np.median(values))`, sorting `values`; 0 for no values.
fn median(values: &mut [u8]) -> u8 {
    values.sort_unstable();
    let middle = values.len() / 2;
    match values.len() {
        0 => 0,
        n if n % 2 == 1 => values[middle],
        // int() truncates the mean toward zero, which is rounding down for digits.
        _ => ((u16::from(values[middle - 1]) + u16::from(values[middle])) / 2) as u8,
    }
}

/// A ListOps expression: a digit, or an operator applied to a list of expressions.
///
/// Digits are meant to be 0-9 and argument lists non-empty; [`super::parse`] and
/// [`super::generate`] only build such trees.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Expr {
    /// A literal digit 0-9.
    Digit(u8),
    /// An operator and its arguments, in order.
    Apply(Op, Vec<Expr>),
}

impl Expr {
    /// The expression's value, the task's label.
    pub fn value(&self) -> u8 {
        match self {
            Expr::Digit(digit) => *digit,
            Expr::Apply(op, args) => op.apply_to_iter(args.iter().map(Expr::value)),
        }
    }

    /// Number of tokens in the LRA string, parentheses not counted: a digit is 1 token, an operator
    /// node is its operator token, its arguments' tokens and the closing `]`.
    pub fn token_len(&self) -> usize {
        match self {
            Expr::Digit(_) => 1,
            Expr::Apply(_, args) => 2 + args.iter().map(Expr::token_len).sum::<usize>(),
        }
    }

    /// Number of levels: 1 for a digit, one more than the deepest argument for an operator node.
    /// The official generator's `max_depth` bounds this.
    pub fn depth(&self) -> usize {
        match self {
            Expr::Digit(_) => 1,
            Expr::Apply(_, args) => 1 + args.iter().map(Expr::depth).max().unwrap_or(0),
        }
    }

    /// The expression as the official LRA release writes it in a file's `Source` column.
    ///
    /// The official generator stores an operator node with arguments `a1..ak` as the nested pairs
    /// `((..((OP, a1), a2).., ak), "]")` and prints each pair as `( A B )`, so
    /// `MAX(2, 9, MIN(4, 7), 0)` becomes
    /// `( ( ( ( ( [MAX 2 ) 9 ) ( ( ( [MIN 4 ) 7 ) ] ) ) 0 ) ] )`.
    pub fn to_lra_string(&self) -> String {
        let mut out = String::with_capacity(self.token_len() * 6);
        self.push_lra(&mut out);
        out
    }

    /// Appends [`Expr::to_lra_string`] to `out`, so writers can reuse one buffer.
    pub(crate) fn push_lra(&self, out: &mut String) {
        match self {
            Expr::Digit(digit @ 0..=9) => out.push(char::from(b'0' + digit)),
            Expr::Digit(digit) => out.push_str(&digit.to_string()),
            Expr::Apply(op, args) => {
                // One pair per argument plus the pair that appends "]".
                for _ in 0..=args.len() {
                    out.push_str("( ");
                }
                out.push_str(op.token());
                for arg in args {
                    out.push(' ');
                    arg.push_lra(out);
                    out.push_str(" )");
                }
                out.push_str(" ] )");
            }
        }
    }
}

/// Why a token-id sequence is not one well-formed prefix expression; `index` is 0-based.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum IdsError {
    Empty,
    UnknownId {
        index: usize,
        id: u32,
    },
    UnmatchedEnd {
        index: usize,
    },
    NoArguments {
        op_index: usize,
        op: Op,
    },
    TooDeep {
        index: usize,
    },
    Trailing {
        index: usize,
        id: u32,
    },
    Unclosed {
        open: usize,
        innermost_index: usize,
        innermost: Op,
    },
}

impl IdsError {
    /// A message for a human, with positions as 1-based columns of `source`.
    pub(crate) fn describe(&self, source: &str) -> String {
        let column = |index| column_of_token(source, index);
        let token = |id: u32| VOCAB.get(id as usize).copied().unwrap_or("?");
        match *self {
            IdsError::Empty => "empty expression".to_string(),
            IdsError::UnknownId { index, id } => {
                format!("unexpected token id {id} at column {}", column(index))
            }
            IdsError::UnmatchedEnd { index } => {
                format!(
                    "unexpected `]` at column {}: no operator is open",
                    column(index)
                )
            }
            IdsError::NoArguments { op_index, op } => format!(
                "operator `{}` at column {} is closed without arguments",
                op.token(),
                column(op_index)
            ),
            IdsError::TooDeep { index } => format!(
                "operators nested more than {MAX_NESTING} deep at column {}",
                column(index)
            ),
            IdsError::Trailing { index, id } => format!(
                "unexpected `{}` at column {}: the expression already ended",
                token(id),
                column(index)
            ),
            IdsError::Unclosed {
                open,
                innermost_index,
                innermost,
            } => format!(
                "missing `]`: {open} operator(s) still open at the end, \
                 the innermost `{}` at column {}",
                innermost.token(),
                column(innermost_index)
            ),
        }
    }
}

/// An operator whose `]` has not been read yet.
struct OpenOperator {
    op: Op,
    index: usize,
    /// Where its arguments start on the stack of finished subtrees.
    first_arg: usize,
}

/// Checks that `ids` are one well-formed expression in prefix order (operator, arguments, `]`)
/// and folds it bottom-up: `digit` turns a digit into a `T`, and `close` replaces an operator's
/// arguments, `finished[first_arg..]`, by its result.
///
/// Iterative, so a hostile input cannot overflow the stack while being read.
fn fold_ids<T>(
    ids: impl IntoIterator<Item = u32>,
    digit: impl Fn(u8) -> T,
    mut close: impl FnMut(Op, &mut Vec<T>, usize),
) -> Result<T, IdsError> {
    let mut open: Vec<OpenOperator> = Vec::new();
    let mut finished: Vec<T> = Vec::new();
    for (index, id) in ids.into_iter().enumerate() {
        if open.is_empty() && !finished.is_empty() {
            return Err(IdsError::Trailing { index, id });
        }
        match token_of_id(id) {
            None => return Err(IdsError::UnknownId { index, id }),
            Some(Token::Digit(value)) => finished.push(digit(value)),
            Some(Token::Op(op)) => {
                if open.len() >= MAX_NESTING {
                    return Err(IdsError::TooDeep { index });
                }
                open.push(OpenOperator {
                    op,
                    index,
                    first_arg: finished.len(),
                });
            }
            Some(Token::End) => {
                let operator = open.pop().ok_or(IdsError::UnmatchedEnd { index })?;
                if operator.first_arg == finished.len() {
                    return Err(IdsError::NoArguments {
                        op_index: operator.index,
                        op: operator.op,
                    });
                }
                close(operator.op, &mut finished, operator.first_arg);
            }
        }
    }
    if let Some(innermost) = open.last() {
        return Err(IdsError::Unclosed {
            open: open.len(),
            innermost_index: innermost.index,
            innermost: innermost.op,
        });
    }
    finished.pop().ok_or(IdsError::Empty)
}

/// Builds the expression from token ids in prefix order.
pub(crate) fn from_ids(ids: impl IntoIterator<Item = u32>) -> Result<Expr, IdsError> {
    fold_ids(ids, Expr::Digit, |op, finished, first_arg| {
        // split_off allocates the argument list once, at its exact size.
        let args = finished.split_off(first_arg);
        finished.push(Expr::Apply(op, args));
    })
}

/// The value of the expression given by token ids in prefix order, without building its tree;
/// the same as `from_ids(ids)?.value()`.
pub(crate) fn value_of_ids(ids: impl IntoIterator<Item = u32>) -> Result<u8, IdsError> {
    fold_ids(
        ids,
        |digit| digit,
        |op, finished, first_arg| {
            let value = op.apply_reordering(&mut finished[first_arg..]);
            finished.truncate(first_arg);
            finished.push(value);
        },
    )
}

/// Token ids of `expr` in prefix order, as [`super::tokenize`] gives them for its LRA string.
#[cfg(test)]
pub(crate) fn to_ids(expr: &Expr) -> Vec<u32> {
    fn push(expr: &Expr, out: &mut Vec<u32>) {
        match expr {
            Expr::Digit(digit) => out.push(super::DIGIT_ZERO_ID + u32::from(*digit)),
            Expr::Apply(op, args) => {
                let op_position = Op::ALL.iter().position(|o| o == op).unwrap_or(0);
                out.push(super::FIRST_OP_ID + op_position as u32);
                args.iter().for_each(|arg| push(arg, out));
                out.push(super::END_ID);
            }
        }
    }
    let mut out = Vec::new();
    push(expr, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::super::{parse, tokenize};
    use super::*;

    fn digits(values: &[u8]) -> Vec<Expr> {
        values.iter().map(|&v| Expr::Digit(v)).collect()
    }

    fn apply(op: Op, values: &[u8]) -> Expr {
        Expr::Apply(op, digits(values))
    }

    /// MAX(2, 9, MIN(4, 7), 0), the example from the format's description.
    fn sample_tree() -> Expr {
        Expr::Apply(
            Op::Max,
            vec![
                Expr::Digit(2),
                Expr::Digit(9),
                apply(Op::Min, &[4, 7]),
                Expr::Digit(0),
            ],
        )
    }

    #[test]
    fn min_max_sum_mod() {
        assert_eq!(apply(Op::Min, &[4, 7, 3, 9]).value(), 3);
        assert_eq!(apply(Op::Max, &[4, 7, 3, 9]).value(), 9);
        assert_eq!(apply(Op::Sm, &[4, 7, 3, 9]).value(), 3);
        assert_eq!(apply(Op::Sm, &[9; 10]).value(), 0);
        assert_eq!(apply(Op::Sm, &[1, 2]).value(), 3);
    }

    #[test]
    fn median_of_even_count_rounds_the_mean_down() {
        assert_eq!(apply(Op::Med, &[1, 2]).value(), 1);
        assert_eq!(apply(Op::Med, &[2, 5]).value(), 3);
        assert_eq!(apply(Op::Med, &[8, 3, 5, 4]).value(), 4);
        assert_eq!(apply(Op::Med, &[9, 9]).value(), 9);
        assert_eq!(apply(Op::Med, &[0, 9]).value(), 4);
    }

    #[test]
    fn median_of_odd_count_is_the_middle_value() {
        assert_eq!(apply(Op::Med, &[9, 1, 5]).value(), 5);
        assert_eq!(apply(Op::Med, &[7, 7, 0, 1, 2]).value(), 2);
    }

    #[test]
    fn nested_values_and_sizes() {
        let tree = sample_tree();
        assert_eq!(tree.value(), 9);
        assert_eq!(tree.token_len(), 9);
        assert_eq!(tree.depth(), 3);
        let nested = Expr::Apply(Op::Sm, vec![tree, apply(Op::Med, &[2, 5]), Expr::Digit(8)]);
        assert_eq!(nested.value(), (9 + 3 + 8) % 10);
        assert_eq!(Expr::Digit(6).value(), 6);
    }

    #[test]
    fn lra_string_matches_the_official_release_format() {
        assert_eq!(
            sample_tree().to_lra_string(),
            "( ( ( ( ( [MAX 2 ) 9 ) ( ( ( [MIN 4 ) 7 ) ] ) ) 0 ) ] )"
        );
        assert_eq!(Expr::Digit(5).to_lra_string(), "5");
    }

    #[test]
    fn parse_inverts_to_lra_string() {
        let tree = sample_tree();
        assert_eq!(parse(&tree.to_lra_string()), Ok(tree.clone()));
        assert_eq!(tokenize(&tree.to_lra_string()), Ok(to_ids(&tree)));
        assert_eq!(parse("[MAX 2 9 [MIN 4 7 ] 0 ]"), Ok(tree));
    }

    #[test]
    fn tokenizer_assigns_the_documented_ids() {
        assert_eq!(
            tokenize("( ( [MIN 0 ) 9 [MAX [MED [SM ] )"),
            Ok(vec![11, 1, 10, 12, 13, 14, 15])
        );
        assert_eq!(tokenize("  "), Ok(vec![]));
        assert_eq!(tokenize("([MIN 1)(2 ])"), Ok(vec![11, 2, 3, 15]));
    }

    #[test]
    fn tokenizer_rejects_tokens_outside_the_vocabulary() {
        assert_eq!(
            tokenize("( [MIN 1 [FOO"),
            Err("unknown token `[FOO` at column 10".to_string())
        );
        assert!(
            tokenize("<pad>")
                .unwrap_err()
                .contains("unknown token `<pad>`")
        );
        assert!(tokenize("10").unwrap_err().contains("unknown token `10`"));
    }

    #[test]
    fn parse_errors_say_what_and_where() {
        let cases = [
            ("", "empty expression"),
            ("( ) ", "empty expression"),
            (
                "[MIN 1 2 ] ]",
                "unexpected `]` at column 12: the expression already ended",
            ),
            ("]", "unexpected `]` at column 1: no operator is open"),
            (
                "1 2",
                "unexpected `2` at column 3: the expression already ended",
            ),
            (
                "( [MAX ] )",
                "operator `[MAX` at column 3 is closed without arguments",
            ),
            (
                "[SM 1 ( [MIN 2",
                "missing `]`: 2 operator(s) still open at the end, \
                 the innermost `[MIN` at column 9",
            ),
        ];
        for (source, message) in cases {
            assert_eq!(parse(source), Err(message.to_string()), "source {source:?}");
        }
    }

    #[test]
    fn nesting_beyond_the_limit_is_an_error_not_a_stack_overflow() {
        let deep = format!("{} 1 {}", "[MIN ".repeat(100_000), "] ".repeat(100_000));
        let message = parse(&deep).unwrap_err();
        assert!(message.contains("nested more than 1000 deep"), "{message}");
        let allowed = format!(
            "{} 1 {}",
            "[MIN ".repeat(MAX_NESTING),
            "] ".repeat(MAX_NESTING)
        );
        assert_eq!(parse(&allowed).map(|e| e.depth()), Ok(MAX_NESTING + 1));
    }

    #[test]
    fn evaluating_ids_agrees_with_evaluating_the_tree() {
        let cfg = super::super::GenerateConfig {
            train: 3_000,
            val: 0,
            test: 0,
            min_len: 5,
            max_len: 300,
            seed: 9,
            ..Default::default()
        };
        let [trees, _, _] = super::super::generate(&cfg).unwrap();
        for tree in &trees {
            assert_eq!(value_of_ids(to_ids(tree)), Ok(tree.value()));
        }
        for op in Op::ALL {
            assert_eq!(
                value_of_ids([11 + op as u32, 3, 9, 6, 2, 15]),
                Ok(op.apply(&[2, 8, 5, 1]))
            );
        }
        for source in ["", "1 2", "]", "[MIN ]", "[SM 1"] {
            let ids = tokenize(source).unwrap();
            assert_eq!(
                value_of_ids(ids.clone()).map_err(|e| e.describe(source)),
                from_ids(ids)
                    .map(|tree| tree.value())
                    .map_err(|e| e.describe(source)),
            );
        }
    }

    #[test]
    fn unknown_ids_are_rejected() {
        assert_eq!(from_ids([0]), Err(IdsError::UnknownId { index: 0, id: 0 }));
        assert_eq!(
            from_ids([11, 2, 99]),
            Err(IdsError::UnknownId { index: 2, id: 99 })
        );
    }
}

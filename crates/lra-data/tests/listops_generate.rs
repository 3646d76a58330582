//! The generator against the evaluator, parser and tokenizer, and its reproducibility.

use std::collections::HashSet;

use lra_data::listops::{Expr, GenerateConfig, Op, generate, parse, tokenize};

/// Calls `visit(op, arg_count)` for every operator node of `tree`.
fn for_each_operator(tree: &Expr, visit: &mut impl FnMut(Op, usize)) {
    if let Expr::Apply(op, args) = tree {
        visit(*op, args.len());
        args.iter().for_each(|arg| for_each_operator(arg, visit));
    }
}

/// Generates with `cfg` and checks every expression against the limits, the parser, the
/// tokenizer and the evaluator; returns the expressions.
fn generate_and_check(cfg: &GenerateConfig) -> Vec<Expr> {
    let [train, val, test] = generate(cfg).unwrap();
    assert_eq!(
        (train.len(), val.len(), test.len()),
        (cfg.train, cfg.val, cfg.test)
    );
    let all: Vec<Expr> = [train, val, test].concat();
    let mut arg_counts_seen = HashSet::new();
    let mut ops_seen = HashSet::new();
    for tree in &all {
        let source = tree.to_lra_string();
        let parsed = parse(&source).unwrap_or_else(|message| panic!("{message}: {source}"));
        assert_eq!(&parsed, tree);
        assert_eq!(parsed.value(), tree.value());
        assert!(tree.value() <= 9);

        let tokens = tokenize(&source).unwrap();
        assert_eq!(tree.token_len(), tokens.len());
        assert!(
            cfg.min_len < tokens.len() && tokens.len() < cfg.max_len,
            "{} tokens outside ({}, {})",
            tokens.len(),
            cfg.min_len,
            cfg.max_len
        );
        assert!(tree.depth() <= cfg.max_depth, "depth {}", tree.depth());
        for_each_operator(tree, &mut |op, arg_count| {
            assert!(
                (2..=cfg.max_args).contains(&arg_count),
                "{arg_count} arguments"
            );
            arg_counts_seen.insert(arg_count);
            ops_seen.insert(op);
        });
    }
    // The whole ranges are used, not just allowed.
    assert_eq!(arg_counts_seen.len(), cfg.max_args - 1);
    assert_eq!(ops_seen.len(), Op::ALL.len());
    assert!(all.iter().any(|tree| tree.depth() == cfg.max_depth));
    all
}

#[test]
fn official_limits_agree_with_parser_tokenizer_and_evaluator() {
    let cfg = GenerateConfig {
        train: 2_000,
        val: 500,
        test: 500,
        ..GenerateConfig::default()
    };
    let all = generate_and_check(&cfg);
    // Labels should be spread over all classes, as in the release.
    let labels: HashSet<u8> = all.iter().map(Expr::value).collect();
    assert_eq!(labels.len(), 10);
}

#[test]
fn small_limits_agree_with_parser_tokenizer_and_evaluator() {
    let cfg = GenerateConfig {
        train: 3_000,
        val: 200,
        test: 200,
        min_len: 10,
        max_len: 60,
        max_depth: 4,
        max_args: 3,
        seed: 11,
    };
    generate_and_check(&cfg);
}

#[test]
fn same_seed_same_data_other_seed_other_data() {
    let cfg = GenerateConfig {
        train: 300,
        val: 50,
        test: 50,
        ..GenerateConfig::default()
    };
    let first = generate(&cfg).unwrap();
    assert_eq!(first, generate(&cfg).unwrap());
    let reseeded = generate(&GenerateConfig { seed: 1, ..cfg }).unwrap();
    assert_ne!(first, reseeded);
    let shared = first[0].iter().filter(|t| reseeded[0].contains(t)).count();
    assert_eq!(shared, 0, "different seeds should give unrelated trees");
}

#[test]
fn no_expression_repeats_within_or_across_splits() {
    // Short trees repeat often, so deduplication is really exercised here.
    let cfg = GenerateConfig {
        train: 1_500,
        val: 300,
        test: 300,
        min_len: 3,
        max_len: 9,
        max_depth: 3,
        max_args: 3,
        seed: 5,
    };
    let splits = generate(&cfg).unwrap();
    let strings: Vec<String> = splits.iter().flatten().map(Expr::to_lra_string).collect();
    let distinct: HashSet<&String> = strings.iter().collect();
    assert_eq!(distinct.len(), strings.len());
    assert_eq!(strings.len(), 2_100);
}

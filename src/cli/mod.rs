//! Command-line interface: one module per subcommand; flags become
//! configuration overrides so that flags and TOML files behave alike.

mod bench;
mod bm25;
mod data;
mod encode;
mod eval;
mod label;
mod mine;
mod pairs;
mod rerank;
mod train;

use clap::{Parser, Subcommand};

/// Self-supervised pretraining of dense text retrievers.
#[derive(Debug, Parser)]
#[command(name = "pretext", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a positive-pair dataset from a corpus with a pretext task.
    Pairs(pairs::PairsArgs),
    /// Train a dual encoder on a pretext task (or a pair dataset).
    Train(train::TrainArgs),
    /// Export a trained run for Hugging Face transformers and sentence-transformers.
    Export(train::ExportArgs),
    /// Embed a corpus with a model folder: ids and vectors (safetensors, .npy).
    Encode(encode::EncodeArgs),
    /// Evaluate a model on a BEIR-format data set (nDCG@10, R@100, R@1000, RR@10, AP@100).
    Eval(eval::EvalArgs),
    /// Train every pretext task the same way and evaluate them side by side.
    Bench(bench::BenchArgs),
    /// Mine negatives for a pair dataset (BM25, dense, random or gold), with
    /// rank windows, easy:hard mixing and false-negative filters.
    Mine(mine::MineArgs),
    /// Label unlabeled queries' retrieved passages with a cross-encoder
    /// (RocketQA's augmentation): a pair file with its scores.
    Label(label::LabelArgs),
    /// Rescore the top of a TREC run with a cross-encoder.
    Rerank(rerank::RerankArgs),
    /// Build or search a BM25 index (Anserini defaults: k1 0.9, b 0.4).
    Bm25(bm25::Bm25Args),
    /// Train a WordPiece tokenizer on a corpus.
    Tokenizer(train::TokenizerArgs),
}

/// Runs the chosen subcommand.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Pairs(args) => pairs::run(args),
        Command::Train(args) => train::run(args),
        Command::Export(args) => train::export(args),
        Command::Tokenizer(args) => train::tokenizer(args),
        Command::Eval(args) => eval::run(args),
        Command::Encode(args) => encode::run(args),
        Command::Bm25(args) => bm25::run(args),
        Command::Rerank(args) => rerank::run(args),
        Command::Label(args) => label::run(args),
        Command::Mine(args) => mine::run(args),
        Command::Bench(args) => bench::run(args),
    }
}

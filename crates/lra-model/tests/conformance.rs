//! Conformance suite run over every registered mixer (the xformers `test_attentions.py` idea):
//! output shape, padding invariance, gradient flow to every parameter and the input, determinism
//! under a seed, batch independence, equality with softmax attention for exact mixers, caps that
//! match the built module, and round trips: the config through TOML text, the module through a
//! checkpoint file into a mixer built from another seed (parameters and fixed non-trained state
//! such as random blocks, features and sketches must all come back).
//! Inputs come from each mixer's default config and caps, never from a per-name special case.
//!
//! The device is `LRA_TEST_DEVICE` (a `--device` name, default `cpu`), e.g.
//! `LRA_TEST_DEVICE=vulkan cargo test --release -p lra-model --features vulkan --test conformance`;
//! bounds are looser off the CPU (`testing::tolerance`).

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Bool, Device, Tensor, TensorData, Tolerance};
use lra_model::mixer::common::testing::{
    device as test_device, gaussian, pad_mask as padded_after, tolerance,
};
use lra_model::mixer::reference::softmax_attention;
use lra_model::{Mixer, MixerDims, MixerInput, MixerKind, TokenMixer};

const BATCH: usize = 2;
/// Longer than the default block/window sizes, and not a multiple of them.
const SEQ: usize = 128;
/// Real tokens of the second sequence; the rest is padding.
const REAL: usize = 91;

fn dims() -> MixerDims {
    MixerDims::new(16, 2, SEQ)
}

fn build(kind: MixerKind, seed: u64, device: &Device) -> Mixer {
    device.seed(seed);
    kind.default_config().init(&dims(), device)
}

fn random_input(seed: u64, device: &Device) -> Tensor<3> {
    gaussian(device, seed, [BATCH, SEQ, dims().d_model])
}

/// First sequence unpadded, second padded after `REAL` tokens.
fn pad_mask(device: &Device) -> Tensor<2, Bool> {
    padded_after(device, SEQ, REAL)
}

/// One forward call. The device RNG is reseeded first, so mixers that draw fresh randomness per
/// call (random features, samples) see the same draws in the calls a test compares.
fn run(mixer: &Mixer, x: Tensor<3>, mask: Tensor<2, Bool>) -> Tensor<3> {
    x.device().seed(RUN_SEED);
    mixer.forward(MixerInput::new(x).pad_mask(mask)).x
}

/// Every registered mixer, or only those named in `LRA_MIXERS` (comma-separated), so that work on
/// one mixer can run the suite for it alone.
fn kinds_under_test() -> Vec<MixerKind> {
    let only = std::env::var("LRA_MIXERS").unwrap_or_default();
    let names: Vec<&str> = only
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    MixerKind::ALL
        .iter()
        .copied()
        .filter(|kind| names.is_empty() || names.contains(&kind.name()))
        .collect()
}

/// Seed of the device RNG at every forward call of the suite.
const RUN_SEED: u64 = 1234;

fn assert_close<const D: usize>(kind: MixerKind, what: &str, a: Tensor<D>, b: Tensor<D>, tol: f32) {
    let diff = (a.clone() - b).abs().max().into_scalar::<f32>();
    let scale = a.abs().max().into_scalar::<f32>().max(1.0);
    assert!(
        diff <= tol * scale,
        "{kind}: {what}: max abs difference {diff} > {tol} (scale {scale})"
    );
}

/// Finite even where a sequence is all padding (an all-black image under
/// `model.zero_ids_are_padding`): the second row here has no real position.
#[test]
fn output_has_the_input_shape_and_is_finite() {
    let device = test_device();
    for kind in kinds_under_test() {
        let mixer = build(kind, 1, &device);
        let out = run(
            &mixer,
            random_input(2, &device),
            padded_after(&device, SEQ, 0),
        );
        assert_eq!(
            out.dims(),
            [BATCH, SEQ, dims().d_model],
            "{kind}: output shape"
        );
        assert!(
            out.is_finite().all().into_scalar::<bool>(),
            "{kind}: non-finite output"
        );
    }
}

#[test]
fn padded_positions_do_not_change_real_outputs() {
    let device = test_device();
    for kind in kinds_under_test() {
        if !kind.default_config().caps().honours_padding {
            continue;
        }
        assert_padding_changes_nothing(kind, &build(kind, 1, &device), &device);
    }
}

/// Overwriting the padded positions with large garbage leaves every real output as it was. The
/// padding is a suffix of the second sequence and, in both, scattered single positions and a run
/// inside the sequence: `model.zero_ids_are_padding` masks black pixels wherever they are.
fn assert_padding_changes_nothing(kind: MixerKind, mixer: &Mixer, device: &Device) {
    let x = random_input(2, device);
    let mask = pad_mask(device).bool_or(holes(device));
    let garbage = random_input(3, device) * 100.0;
    let pad3 = mask
        .clone()
        .reshape([BATCH, SEQ, 1])
        .expand([BATCH, SEQ, dims().d_model]);
    let x_garbage = x.clone().mask_where(pad3.clone(), garbage);
    let a = run(mixer, x, mask.clone()).mask_fill(pad3.clone(), 0.0);
    let b = run(mixer, x_garbage, mask).mask_fill(pad3, 0.0);
    let tol = tolerance(device, 1e-5);
    assert_close(kind, "outputs at real positions", a, b, tol);
}

/// `[BATCH, SEQ]`: padding inside both sequences (never position 0, which a CLS would hold).
fn holes(device: &Device) -> Tensor<2, Bool> {
    let inside = |j: usize| j % 7 == 3 || (40..52).contains(&j);
    let values: Vec<bool> = (0..BATCH * SEQ).map(|i| inside(i % SEQ)).collect();
    Tensor::from_data(TensorData::new(values, [BATCH, SEQ]), device)
}

/// `model.qkv_dim` (the JAX LRA configs' narrower queries, keys and values): mixers whose caps
/// say `qkv_width` build heads `qkv_dim / n_heads` wide and still map `d_model` to `d_model`,
/// finite and blind to padding; the others refuse it with an error naming the setting.
#[test]
fn qkv_dim_narrows_the_heads_where_the_caps_say_so() {
    let device = test_device();
    let narrow = dims().with_qkv_dim(8);
    for kind in kinds_under_test() {
        let config = kind.default_config();
        let checked = config.validate(&narrow);
        if !config.caps().qkv_width {
            let error = checked.expect_err(&format!("{kind}: accepted qkv_dim 8"));
            assert!(error.to_string().contains("qkv_dim"), "{kind}: {error}");
            continue;
        }
        checked.unwrap_or_else(|e| panic!("{kind}: qkv_dim 8 refused: {e}"));
        device.seed(1);
        let mixer = config.init(&narrow, &device);
        assert!(
            mixer.num_params() < build(kind, 1, &device).num_params(),
            "{kind}: narrower queries, keys and values left the parameter count"
        );
        if let Some(parts) = mixer.attention() {
            let [q, k, v] = parts.projection.project(random_input(4, &device));
            for head in [q, k, v] {
                assert_eq!(head.dims(), [BATCH, 2, SEQ, 4], "{kind}: projected heads");
            }
        }
        let out = run(&mixer, random_input(2, &device), pad_mask(&device));
        assert_eq!(out.dims(), [BATCH, SEQ, dims().d_model], "{kind}: output");
        assert!(
            out.is_finite().all().into_scalar::<bool>(),
            "{kind}: non-finite"
        );
        if config.caps().honours_padding {
            assert_padding_changes_nothing(kind, &mixer, &device);
        }
    }
}

/// `model.attention_bias = false` (the JAX LRA attention has no biases): mixers with query/key/
/// value projections (caps `projection_bias`) build them without biases, fewer parameters, and still
/// map finitely; the others refuse it with an error naming the setting.
#[test]
fn attention_bias_false_drops_the_projection_biases_where_the_caps_say_so() {
    let device = test_device();
    let without = dims().with_projection_bias(false);
    for kind in kinds_under_test() {
        let config = kind.default_config();
        let checked = config.validate(&without);
        if !config.caps().projection_bias {
            let error = checked.expect_err(&format!("{kind}: accepted attention_bias = false"));
            assert!(
                error.to_string().contains("attention_bias"),
                "{kind}: {error}"
            );
            continue;
        }
        checked.unwrap_or_else(|e| panic!("{kind}: attention_bias = false refused: {e}"));
        device.seed(1);
        let mixer = config.init(&without, &device);
        let dropped = build(kind, 1, &device).num_params() - mixer.num_params();
        assert!(
            dropped >= 2 * dims().d_model,
            "{kind}: {dropped} parameters fewer without projection biases"
        );
        let out = run(&mixer, random_input(2, &device), pad_mask(&device));
        assert!(
            out.is_finite().all().into_scalar::<bool>(),
            "{kind}: non-finite"
        );
    }
}

#[test]
fn gradient_reaches_every_parameter_and_the_input() {
    let device = test_device().autodiff();
    for kind in kinds_under_test() {
        let mixer = build(kind, 1, &device);
        let x = random_input(2, &device).require_grad();
        let weights = random_input(4, &device);
        let loss = (run(&mixer, x.clone(), pad_mask(&device)) * weights).sum();
        let grads = loss.backward();
        let x_grad = x
            .grad(&grads)
            .unwrap_or_else(|| panic!("{kind}: no gradient for the input"));
        assert!(
            x_grad.abs().sum().into_scalar::<f32>() > 0.0,
            "{kind}: zero input gradient"
        );
        let params = GradientsParams::from_grads(grads, &mixer);
        let mut check = GradientCheck {
            kind,
            grads: &params,
            visited: 0,
        };
        mixer.visit(&mut check);
        assert!(check.visited > 0, "{kind}: no parameters visited");
    }
}

struct GradientCheck<'a> {
    kind: MixerKind,
    grads: &'a GradientsParams,
    visited: usize,
}

impl ModuleVisitor for GradientCheck<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        // Fixed tensors (random features, sketches) are recorded in checkpoints, not trained.
        if !param.is_require_grad() {
            return;
        }
        self.visited += 1;
        let id: ParamId = param.id;
        let grad = self.grads.get::<D>(id).unwrap_or_else(|| {
            panic!(
                "{}: parameter {id} {:?} got no gradient",
                self.kind,
                param.shape()
            )
        });
        let norm = grad.abs().sum().into_scalar::<f32>();
        assert!(
            norm > 0.0,
            "{}: parameter {id} has an all-zero gradient",
            self.kind
        );
    }
}

#[test]
fn same_seed_gives_the_same_output() {
    let device = test_device();
    for kind in kinds_under_test() {
        let a = run(
            &build(kind, 7, &device),
            random_input(2, &device),
            pad_mask(&device),
        );
        let b = run(
            &build(kind, 7, &device),
            random_input(2, &device),
            pad_mask(&device),
        );
        assert_close(kind, "same seed", a.clone(), b, tolerance(&device, 0.0));
        let c = run(
            &build(kind, 8, &device),
            random_input(2, &device),
            pad_mask(&device),
        );
        let diff = (a - c).abs().max().into_scalar::<f32>();
        assert!(diff > 0.0, "{kind}: another seed gave identical parameters");
    }
}

#[test]
fn each_batch_row_equals_running_it_alone() {
    let device = test_device();
    for kind in kinds_under_test() {
        let mixer = build(kind, 1, &device);
        let x = random_input(2, &device);
        let mask = pad_mask(&device);
        let together = run(&mixer, x.clone(), mask.clone());
        for row in 0..BATCH {
            let alone = run(
                &mixer,
                x.clone().narrow(0, row, 1),
                mask.clone().narrow(0, row, 1),
            );
            assert_close(
                kind,
                &format!("row {row}"),
                together.clone().narrow(0, row, 1),
                alone,
                tolerance(&device, 1e-5),
            );
        }
    }
}

#[test]
fn exact_mixers_equal_softmax_attention() {
    let device = test_device();
    for kind in kinds_under_test() {
        let config = kind.default_config();
        if !config.caps().exact_softmax {
            continue;
        }
        let mixer = build(kind, 1, &device);
        let core = mixer
            .attention_core()
            .unwrap_or_else(|| panic!("{kind}: exact but no attention core"));
        let qkv = |seed| gaussian(&device, seed, [BATCH, 2, SEQ, 8]);
        let (q, k, v) = (qkv(11), qkv(12), qkv(13));
        let mask = Some(pad_mask(&device));
        let expected = softmax_attention(q.clone(), k.clone(), v.clone(), mask.clone());
        let actual = core.attend(q, k, v, mask);
        actual.to_data().assert_approx_eq::<f32>(
            &expected.to_data(),
            Tolerance::absolute(tolerance(&device, 1e-5)),
        );
    }
}

#[test]
fn caps_say_whether_there_is_an_attention_core() {
    let device = test_device();
    for kind in kinds_under_test() {
        let has_core = build(kind, 1, &device).attention_core().is_some();
        assert_eq!(
            kind.default_config().caps().attention_core,
            has_core,
            "{kind}: caps().attention_core"
        );
    }
}

#[test]
fn config_round_trips_through_toml_text() {
    for kind in kinds_under_test() {
        let config = kind.default_config();
        let text = toml::to_string(&config.to_table()).expect("config serialises");
        let table: toml::Table = toml::from_str(&text).expect("written TOML parses");
        let parsed = kind
            .parse_config(&table)
            .unwrap_or_else(|e| panic!("{kind}: written config does not parse back: {e}\n{text}"));
        assert_eq!(
            parsed, config,
            "{kind}: config after a TOML round trip\n{text}"
        );
    }
}

#[test]
fn checkpoint_restores_the_mixer_into_one_built_from_another_seed() {
    let device = test_device();
    for kind in kinds_under_test() {
        let saved = build(kind, 1, &device);
        let other = build(kind, 2, &device);
        let x = random_input(3, &device);
        let expected = run(&saved, x.clone(), pad_mask(&device));
        let before = run(&other, x.clone(), pad_mask(&device));
        assert!(
            (expected.clone() - before).abs().max().into_scalar::<f32>() > 0.0,
            "{kind}: the two seeds built the same mixer"
        );
        // Through a file, as `--resume` does (`Module::save_file`, burnpack).
        let path =
            std::env::temp_dir().join(format!("lra-conformance-{kind}-{}.bpk", std::process::id()));
        saved.save_file(&path).expect("save");
        let loaded = other
            .try_load_file(&path)
            .unwrap_or_else(|e| panic!("{kind}: cannot load its own checkpoint: {e:?}"));
        let restored = run(&loaded, x, pad_mask(&device));
        // GPU backends read the loaded file when a kernel first uses its tensors: run them
        // before the file goes.
        device.sync().expect("device sync");
        std::fs::remove_file(&path).expect("remove the checkpoint");
        let tol = tolerance(&device, 0.0);
        assert_close(kind, "output after save/load", expected, restored, tol);
    }
}

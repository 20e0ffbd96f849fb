//! `leukex explain` end to end on a small ResNet18 (2 classes, closed-form weights, 64×64
//! inputs): the output layout, shapes, targets and explain.json, the maps against the
//! library called in-process, resampling to the original image size, error messages,
//! and parameter-carrying file ids.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use burn::prelude::*;
use common::{leukex, s, text};
use leukex_data::npy;
use leukex_explain::run::explain_batch;
use leukex_explain::{Method, MethodParams, scale_and_resize};
use leukex_models::closed_form::{closed_form_state_dict, input_value};
use leukex_models::{Arch, Classifier, ModelConfig};
use serde_json::Value;

/// Closed-form ResNet18 weights with 2 classes, written to `dir/r18.safetensors`.
fn weights(dir: &Path) -> PathBuf {
    let model = Classifier::new(&ModelConfig::new(Arch::ResNet18, 2), &Default::default());
    let sd = closed_form_state_dict(&model, None);
    let path = dir.join("r18.safetensors");
    std::fs::write(&path, sd.to_safetensors(&[])).unwrap();
    path
}

/// `leukex explain --arch resnet18 --weights W` followed by `args`.
fn explain(weights: &Path, args: &[&str]) -> Output {
    let mut all = vec!["explain", "--arch", "resnet18", "--weights", s(weights)];
    all.extend_from_slice(args);
    leukex(&all)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn check_map(path: &Path, shape: &[usize]) -> Vec<f32> {
    let m = npy::read_f32(path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.shape, shape, "{}", path.display());
    assert!(
        m.data.iter().all(|v| v.is_finite()),
        "{}: not finite",
        path.display()
    );
    assert!(
        m.data.iter().any(|&v| v != m.data[0]),
        "{}: constant",
        path.display()
    );
    m.data
}

#[test]
fn npy_input_maps_json_and_fixed_target() {
    let tmp = tempfile::tempdir().unwrap();
    let w = weights(tmp.path());
    let shape = [2usize, 3, 64, 64];
    let x = input_value(&shape);
    let input = tmp.path().join("x.npy");
    npy::write_f32(&input, &shape, &x).unwrap();
    let out = tmp.path().join("maps");
    let methods = ["gradient", "grad-cam", "lrp-epsilon-plus-flat"];
    let o = explain(
        &w,
        &[
            "--input",
            s(&input),
            "--out",
            s(&out),
            "--method",
            "gradient,grad-cam",
            "--method",
            "lrp-epsilon-plus-flat",
            "--batch",
            "1",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));

    let model_dir = out.join("r18");
    let j = read_json(&model_dir.join("explain.json"));
    let images = j["images"].as_object().unwrap();
    assert_eq!(images.len(), 2, "{j}");
    assert_eq!(j["model"]["arch"], "resnet18");
    assert_eq!(j["model"]["num_classes"], 2);
    assert_eq!(j["target"], "predicted");
    let ids: Vec<&str> = j["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, methods);
    assert_eq!(j["timings"]["batches"].as_array().unwrap().len(), 2);

    // The same maps from the library, post-processed as documented.
    let model = Classifier::from_file(
        &ModelConfig::new(Arch::ResNet18, 2),
        &w,
        &Default::default(),
    )
    .unwrap()
    .valid();
    let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), shape), &Default::default());
    let targets = leukex_explain::predicted(&model.forward(xt.clone()));
    let ms: Vec<Method> = methods
        .iter()
        .map(|n| Method::parse(n, &MethodParams::default()).unwrap())
        .collect();
    let want = explain_batch(&model, xt, &targets, &ms).unwrap();
    for (i, stem) in ["x_0", "x_1"].into_iter().enumerate() {
        let info = &images[stem];
        assert_eq!(info["target"], targets[i], "{info}");
        assert_eq!(info["predicted"], targets[i], "{info}");
        assert_eq!(info["softmax"].as_array().unwrap().len(), 2);
        for (mi, (id, m)) in methods.iter().zip(&want).enumerate() {
            let got = check_map(&model_dir.join(stem).join(format!("{id}.npy")), &[64, 64]);
            let m = if mi == 1 {
                scale_and_resize(m.clone(), 64, 64)
            } else {
                m.clone()
            };
            let v = m.into_data().try_into_vec::<f32>().unwrap();
            let c = v.len() / (2 * 64 * 64);
            let per = c * 64 * 64;
            let summed: Vec<f32> = (0..64 * 64)
                .map(|p| (0..c).map(|ch| v[i * per + ch * 64 * 64 + p]).sum())
                .collect();
            let scale = summed.iter().fold(0f32, |a, b| a.max(b.abs()));
            let err = got
                .iter()
                .zip(&summed)
                .fold(0f32, |a, (g, w)| a.max((g - w).abs()));
            assert!(
                err <= 1e-4 * scale,
                "{stem}/{id}: max error {err} of {scale}"
            );
            for png in [format!("{id}.png"), format!("{id}_overlay.png")] {
                let p = model_dir.join(stem).join(png);
                let img = image::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                assert_eq!((img.width(), img.height()), (64, 64));
            }
        }
    }

    // A fixed class overwrites the same files and is recorded for every image;
    // --keep-channels keeps [3, H, W] (CAMs stay [H, W]); --no-png writes no image.
    let out2 = tmp.path().join("maps2");
    let o = explain(
        &w,
        &[
            "--input",
            s(&input),
            "--out",
            s(&out2),
            "--method",
            "gradient,grad-cam",
            "--target",
            "1",
            "--keep-channels",
            "--no-png",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let j = read_json(&out2.join("r18/explain.json"));
    for (_, info) in j["images"].as_object().unwrap() {
        assert_eq!(info["target"], 1, "{info}");
    }
    check_map(&out2.join("r18/x_1/gradient.npy"), &[3, 64, 64]);
    check_map(&out2.join("r18/x_1/grad-cam.npy"), &[64, 64]);
    assert!(!out2.join("r18/x_1/gradient.png").exists());
}

#[test]
fn images_get_maps_at_their_original_size_and_true_targets() {
    let tmp = tempfile::tempdir().unwrap();
    let w = weights(tmp.path());
    let imgs = tmp.path().join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    for (name, (iw, ih)) in [("Im001_1.png", (80u32, 60u32)), ("Im002_0.png", (50, 70))] {
        let img = image::RgbImage::from_fn(iw, ih, |x, y| {
            image::Rgb([(x * 3) as u8, (y * 3) as u8, ((x * y) % 251) as u8])
        });
        img.save(imgs.join(name)).unwrap();
    }
    let out = tmp.path().join("maps");
    let o = explain(
        &w,
        &[
            "--input",
            s(&imgs),
            "--out",
            s(&out),
            "--method",
            "gradient,grad-cam,lrp-epsilon-plus-flat",
            "--target",
            "true",
            "--size",
            "64",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let dir = out.join("r18");
    let j = read_json(&dir.join("explain.json"));
    assert_eq!(j["preprocessing"]["size"], serde_json::json!([64, 64]));
    for (stem, label, (h, ww)) in [("Im001_1", 1, (60usize, 80usize)), ("Im002_0", 0, (70, 50))] {
        let info = &j["images"][stem];
        assert_eq!(info["target"], label, "{info}");
        assert_eq!(info["true_label"], label, "{info}");
        for id in ["gradient", "grad-cam", "lrp-epsilon-plus-flat"] {
            check_map(&dir.join(stem).join(format!("{id}.npy")), &[h, ww]);
            for png in [format!("{id}.png"), format!("{id}_overlay.png")] {
                let p = dir.join(stem).join(png);
                let img = image::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                assert_eq!((img.height() as usize, img.width() as usize), (h, ww));
            }
        }
    }
}

#[test]
fn errors_name_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let w = weights(tmp.path());
    let input = tmp.path().join("x.npy");
    npy::write_f32(&input, &[1, 3, 32, 32], &input_value(&[1, 3, 32, 32])).unwrap();
    let out = tmp.path().join("maps");
    let fails = |args: &[&str]| {
        let o = explain(&w, args);
        assert!(!o.status.success(), "{}", text(&o));
        text(&o)
    };

    let msg = fails(&[
        "--input",
        s(&input),
        "--out",
        s(&out),
        "--method",
        "deep-dream",
    ]);
    assert!(
        msg.contains("deep-dream")
            && msg.contains("lrp-epsilon-plus-flat")
            && msg.contains("grad-cam"),
        "{msg}"
    );

    let msg = fails(&[
        "--input",
        s(&input),
        "--out",
        s(&out),
        "--method",
        "grad-cam",
        "--layer",
        "nope",
    ]);
    assert!(msg.contains("\"nope\"") && msg.contains("layer4"), "{msg}");

    let cell = tmp.path().join("cell.png");
    image::RgbImage::from_pixel(40, 40, image::Rgb([200, 100, 50]))
        .save(&cell)
        .unwrap();
    let msg = fails(&[
        "--input",
        s(&cell),
        "--out",
        s(&out),
        "--method",
        "gradient",
        "--target",
        "true",
    ]);
    assert!(msg.contains(s(&cell)) && msg.contains("label"), "{msg}");

    let msg = fails(&[
        "--input",
        s(&input),
        "--out",
        s(&out),
        "--method",
        "gradient",
        "--target",
        "2",
    ]);
    assert!(msg.contains("2 classes"), "{msg}");

    let flat = tmp.path().join("flat.npy");
    npy::write_f32(&flat, &[3, 32, 32], &input_value(&[3, 32, 32])).unwrap();
    let msg = fails(&[
        "--input",
        s(&flat),
        "--out",
        s(&out),
        "--method",
        "gradient",
    ]);
    assert!(
        msg.contains(s(&flat)) && msg.contains("[N, 3, H, W]"),
        "{msg}"
    );

    assert!(!out.exists(), "a failed run wrote output");
}

#[test]
fn parameters_change_the_file_id() {
    let tmp = tempfile::tempdir().unwrap();
    let w = weights(tmp.path());
    let input = tmp.path().join("x.npy");
    npy::write_f32(&input, &[1, 3, 64, 64], &input_value(&[1, 3, 64, 64])).unwrap();
    let out = tmp.path().join("maps");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "--input",
            s(&input),
            "--out",
            s(&out),
            "--method",
            "lrp-epsilon",
            "--no-png",
        ];
        args.extend_from_slice(extra);
        let o = explain(&w, &args);
        assert!(o.status.success(), "{}", text(&o));
    };
    run(&[]);
    let default = out.join("r18/x_0/lrp-epsilon.npy");
    let before = std::fs::read(&default).unwrap();
    run(&["--epsilon", "0.25"]);
    let eps = out.join("r18/x_0/lrp-epsilon_eps0.25.npy");
    let a = check_map(&default, &[64, 64]);
    let b = check_map(&eps, &[64, 64]);
    assert_eq!(
        std::fs::read(&default).unwrap(),
        before,
        "default map overwritten"
    );
    assert_ne!(a, b, "epsilon had no effect");
    let j = read_json(&out.join("r18/explain.json"));
    assert_eq!(j["methods"][0]["id"], "lrp-epsilon_eps0.25");
    assert_eq!(
        j["methods"][0]["method"]["composite"]["dense"]["epsilon"],
        0.25
    );
    // Run options are part of the id as well.
    run(&["--score", "softmax", "--init-relevance", "score"]);
    let init = check_map(&out.join("r18/x_0/lrp-epsilon_init-score.npy"), &[64, 64]);
    assert_ne!(init, a, "the starting relevance had no effect");
    assert_eq!(std::fs::read(&default).unwrap(), before);
    let j = read_json(&out.join("r18/explain.json"));
    assert_eq!(j["score"], "softmax");
    assert_eq!(j["init_relevance"], "score");
    // --conservation: relevance sums per layer; the head receives exactly the start.
    run(&["--conservation"]);
    let csv = std::fs::read_to_string(out.join("r18/conservation.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("stem,method,layer,relevance_sum,output_relevance")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 22, "20 convs, fc and the input of ResNet18");
    let fc = rows.iter().find(|r| r[2] == "fc").expect("fc row");
    assert_eq!(
        (fc[0], fc[1], fc[3], fc[4]),
        ("x_0", "lrp-epsilon", "1", "1")
    );
    assert_eq!(rows.last().unwrap()[2], "input");
}

#[test]
fn score_cam_writes_a_scaled_map_at_input_size() {
    // One 64×64 image: ResNet18's layer4 is 512 × 2×2, so 512 masked forward passes.
    let tmp = tempfile::tempdir().unwrap();
    let w = weights(tmp.path());
    let shape = [1usize, 3, 64, 64];
    let x = input_value(&shape);
    let input = tmp.path().join("x.npy");
    npy::write_f32(&input, &shape, &x).unwrap();
    let out = tmp.path().join("maps");
    let o = explain(
        &w,
        &[
            "--input",
            s(&input),
            "--out",
            s(&out),
            "--method",
            "score-cam",
            "--score-cam-batch",
            "64",
            "--no-png",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let got = check_map(&out.join("r18/x_0/score-cam.npy"), &[64, 64]);
    let j = read_json(&out.join("r18/explain.json"));
    assert_eq!(j["methods"][0]["id"], "score-cam");
    assert_eq!(j["methods"][0]["method"]["family"], "score-cam");
    assert_eq!(j["methods"][0]["layer"], "layer4");
    assert!(j["methods"][0]["signed"] == false);

    // The library's map, scaled and resized as the other CAMs.
    let model = Classifier::from_file(
        &ModelConfig::new(Arch::ResNet18, 2),
        &w,
        &Default::default(),
    )
    .unwrap()
    .valid();
    let xt = Tensor::<4>::from_data(TensorData::new(x, shape), &Default::default());
    let targets = leukex_explain::predicted(&model.forward(xt.clone()));
    let cam = leukex_explain::score_cam(&model, xt, &targets, "layer4", 32).unwrap();
    assert_eq!(cam.dims(), [1, 1, 2, 2]);
    let want = scale_and_resize(cam, 64, 64)
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    let err = got
        .iter()
        .zip(&want)
        .fold(0f32, |a, (g, w)| a.max((g - w).abs()));
    assert!(err <= 1e-5, "max error {err}");
    let max = got.iter().fold(0f32, |a, &b| a.max(b));
    assert!((max - 1.0).abs() < 1e-5 && got.iter().all(|&v| v >= 0.0));
}

#[test]
fn deep_taylor_gets_the_input_bounds_and_the_lrp_rendering() {
    // deep-taylor-bounded takes zᴮ's bounds from the preprocessing, as lrp-epsilon-gamma-box
    // does; both Deep Taylor maps are signed LRP maps (seismic, limits ±max|v|).
    use leukex_evaluate::Colormap;
    use leukex_evaluate::colormap::innvestigate_indices;
    let tmp = tempfile::tempdir().unwrap();
    let w = weights(tmp.path());
    let shape = [1usize, 3, 32, 32];
    let x = input_value(&shape);
    let input = tmp.path().join("x.npy");
    npy::write_f32(&input, &shape, &x).unwrap();
    let out = tmp.path().join("maps");
    let o = explain(
        &w,
        &[
            "--input",
            s(&input),
            "--out",
            s(&out),
            "--method",
            "deep-taylor,deep-taylor-bounded",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let j = read_json(&out.join("r18/explain.json"));
    let bounds = &j["input_bounds"];
    let entries = j["methods"].as_array().unwrap();
    let ids: Vec<&str> = entries.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["deep-taylor", "deep-taylor-bounded"]);
    for e in entries {
        assert!(e["signed"] == true && e["method"]["family"] == "lrp", "{e}");
        assert_eq!(e["method"]["composite"]["conv"]["rule"], "z-plus-no-bias");
        assert_eq!(e["method"]["composite"]["dense"]["rule"], "z-plus-no-bias");
    }
    assert!(entries[0]["method"]["composite"]["first"].is_null());
    let first = &entries[1]["method"]["composite"]["first"];
    assert_eq!(first["rule"], "z-box");
    assert_eq!(
        (&first["low"], &first["high"]),
        (&bounds["low"], &bounds["high"])
    );

    // The library's maps with those bounds, and their seismic rendering.
    let floats = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_f64().unwrap())
            .collect()
    };
    let p = MethodParams {
        bounds: Some((floats(&bounds["low"]), floats(&bounds["high"]))),
        ..Default::default()
    };
    let model = Classifier::from_file(
        &ModelConfig::new(Arch::ResNet18, 2),
        &w,
        &Default::default(),
    )
    .unwrap()
    .valid();
    let xt = Tensor::<4>::from_data(TensorData::new(x, shape), &Default::default());
    let targets = leukex_explain::predicted(&model.forward(xt.clone()));
    let ms: Vec<Method> = ids.iter().map(|n| Method::parse(n, &p).unwrap()).collect();
    let want = explain_batch(&model, xt, &targets, &ms).unwrap();
    let seismic = Colormap::seismic();
    let mut maps = Vec::new();
    for (id, m) in ids.iter().zip(want) {
        let dir = out.join("r18/x_0");
        let got = check_map(&dir.join(format!("{id}.npy")), &[32, 32]);
        let v = m.sum_dim(1).into_data().try_into_vec::<f32>().unwrap();
        let scale = v.iter().fold(0f32, |a, b| a.max(b.abs()));
        let err = got
            .iter()
            .zip(&v)
            .fold(0f32, |a, (g, w)| a.max((g - w).abs()));
        assert!(err <= 1e-4 * scale, "{id}: max error {err} of {scale}");
        let png = image::open(dir.join(format!("{id}.png")))
            .unwrap()
            .to_rgb8();
        assert_eq!(png.dimensions(), (32, 32));
        for (px, i) in png.pixels().zip(innvestigate_indices(&got)) {
            let c = seismic.rgb[i as usize].map(|c| (c * 255.0).round() as u8);
            assert_eq!(px.0, c, "{id}: not the seismic rendering");
        }
        maps.push(got);
    }
    assert_ne!(maps[0], maps[1], "the bounds had no effect");
}

#[test]
fn paper_preset_uses_the_tools_conventions_and_matlab_grad_cam() {
    // --paper: the paper's four methods with iNNvestigate's and MATLAB's conventions, the
    // assumptions in explain.json; Grad-CAM as MATLAB's gradCAM (softmax, bicubic, no
    // scaling), which the library reproduces with CamStyle::Matlab.
    use leukex_explain::run::{ExplainOptions, explain_batch_with};
    use leukex_explain::{CamStyle, InitRelevance, Score};
    let tmp = tempfile::tempdir().unwrap();
    let w = weights(tmp.path());
    let shape = [1usize, 3, 64, 64];
    let x = input_value(&shape);
    let input = tmp.path().join("x.npy");
    npy::write_f32(&input, &shape, &x).unwrap();
    let out = tmp.path().join("maps");
    let o = explain(&w, &["--input", s(&input), "--out", s(&out), "--paper"]);
    assert!(o.status.success(), "{}", text(&o));
    let j = read_json(&out.join("r18/explain.json"));
    assert_eq!(j["preset"]["name"], "paper", "{j}");
    assert_eq!(j["preset"]["assumptions"].as_array().unwrap().len(), 7);
    assert_eq!(j["cam_style"], "matlab");
    assert_eq!(j["init_relevance"], "score");
    let ids: Vec<&str> = j["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 4, "{ids:?}");
    for (id, name) in ids[..2].iter().zip(["lrp-epsilon", "deep-taylor"]) {
        assert!(
            id.starts_with(name) && id.contains("innvestigate") && id.contains("init-score"),
            "{id}"
        );
    }
    assert_eq!(ids[2], "input-x-gradient");
    assert_eq!(ids[3], "grad-cam_matlab");

    let model = Classifier::from_file(
        &ModelConfig::new(Arch::ResNet18, 2),
        &w,
        &Default::default(),
    )
    .unwrap()
    .valid();
    let xt = Tensor::<4>::from_data(TensorData::new(x, shape), &Default::default());
    let targets = leukex_explain::predicted(&model.forward(xt.clone()));
    let cam = Method::parse("grad-cam", &MethodParams::default()).unwrap();
    let options = ExplainOptions {
        score: Score::Logit,
        init_relevance: InitRelevance::Score,
        cam_style: CamStyle::Matlab,
    };
    let raw = explain_batch_with(
        &model,
        xt.clone(),
        &targets,
        std::slice::from_ref(&cam),
        &options,
    )
    .unwrap()
    .remove(0);
    let want = CamStyle::Matlab
        .finish(raw, 64, 64)
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    let got = check_map(&out.join("r18/x_0/grad-cam_matlab.npy"), &[64, 64]);
    let scale = want.iter().fold(0f32, |a, b| a.max(b.abs()));
    let err = got
        .iter()
        .zip(&want)
        .fold(0f32, |a, (g, w)| a.max((g - w).abs()));
    assert!(err <= 1e-5 * scale, "max error {err} of {scale}");
    // Not the pytorch-grad-cam map: not scaled to [0, 1], and from the softmax gradient.
    let max = got.iter().copied().fold(f32::MIN, f32::max);
    assert!(
        (max - 1.0).abs() > 1e-3,
        "MATLAB's map is not min-max scaled"
    );
    let logit_style = ExplainOptions {
        cam_style: CamStyle::PytorchGradCam,
        ..options
    };
    let lib = explain_batch_with(&model, xt, &targets, &[cam], &logit_style)
        .unwrap()
        .remove(0);
    let lib = scale_and_resize(lib, 64, 64)
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    let differs = lib.iter().zip(&got).any(|(a, b)| (a - b).abs() > 1e-3);
    assert!(differs, "the MATLAB style changed nothing");

    // The preset fixes the conventions: contradicting them is an error.
    let o = explain(
        &w,
        &[
            "--input",
            s(&input),
            "--out",
            s(&out),
            "--paper",
            "--score",
            "softmax",
        ],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("--score"), "{}", text(&o));
}

#[test]
fn non_finite_input_stops_only_its_image_and_is_never_a_class() {
    let tmp = tempfile::tempdir().unwrap();
    let w = weights(tmp.path());
    let shape = [3usize, 3, 64, 64];
    let mut x = input_value(&shape);
    // Row 1: a NaN at channel 2, y 5, x 7.
    let bad = 3 * 64 * 64 + 2 * 64 * 64 + 5 * 64 + 7;
    x[bad] = f32::NAN;
    let input = tmp.path().join("x.npy");
    npy::write_f32(&input, &shape, &x).unwrap();
    let out = tmp.path().join("maps");
    let o = explain(
        &w,
        &[
            "--input",
            s(&input),
            "--out",
            s(&out),
            "--method",
            "gradient,grad-cam,lrp-epsilon",
            "--batch",
            "2",
        ],
    );
    let msg = text(&o);
    assert!(!o.status.success(), "{msg}");
    assert!(
        msg.contains(&format!("{} row 1", s(&input)))
            && msg.contains("NaN at [c=2, y=5, x=7]")
            && msg.contains("1 of 3 images failed"),
        "{msg}"
    );
    // The other rows, in the same batch and after it, are explained as usual.
    let j = read_json(&out.join("r18/explain.json"));
    let images = j["images"].as_object().unwrap();
    assert_eq!(images.keys().collect::<Vec<_>>(), ["x_0", "x_2"], "{j}");
    assert!(
        j["failed"]["x_1"]["error"]
            .as_str()
            .unwrap()
            .contains("NaN")
    );
    for stem in ["x_0", "x_2"] {
        for id in ["gradient", "grad-cam", "lrp-epsilon"] {
            check_map(&out.join(format!("r18/{stem}/{id}.npy")), &[64, 64]);
        }
    }
    assert!(!out.join("r18/x_1").exists());

    // predict: the row gets NaN logits and an error, never a class.
    let logits = tmp.path().join("logits.npy");
    let o = leukex(&[
        "predict",
        "--arch",
        "resnet18",
        "--weights",
        s(&w),
        "--input",
        s(&input),
        "--out",
        s(&logits),
    ]);
    let msg = text(&o);
    assert!(!o.status.success(), "{msg}");
    assert!(
        msg.contains(&format!("{} row 1", s(&input))) && msg.contains("[c=2, y=5, x=7]"),
        "{msg}"
    );
    let l = npy::read_f32(&logits).unwrap();
    assert_eq!(l.shape, [3, 2]);
    assert!(l.data[2..4].iter().all(|v| v.is_nan()));
    assert!(
        l.data[..2]
            .iter()
            .chain(&l.data[4..])
            .all(|v| v.is_finite())
    );
}

#[test]
fn non_finite_weights_are_refused_by_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let model = Classifier::new(&ModelConfig::new(Arch::ResNet18, 2), &Default::default());
    let mut sd = closed_form_state_dict(&model, None);
    let key = "layer2.0.bn1.running_var";
    let mut t = sd.remove(key).unwrap();
    t.data[3] = f32::INFINITY;
    sd.insert(key, t.shape, t.data);
    let w = tmp.path().join("r18.safetensors");
    std::fs::write(&w, sd.to_safetensors(&[])).unwrap();
    let shape = [1usize, 3, 32, 32];
    let input = tmp.path().join("x.npy");
    npy::write_f32(&input, &shape, &input_value(&shape)).unwrap();
    let out = tmp.path().join("maps");
    let o = explain(
        &w,
        &[
            "--input",
            s(&input),
            "--out",
            s(&out),
            "--method",
            "gradient",
        ],
    );
    let msg = text(&o);
    assert!(!o.status.success(), "{msg}");
    assert!(
        msg.contains(key) && msg.contains("inf at index 3") && msg.contains(s(&w)),
        "{msg}"
    );
    assert!(!out.exists());
}

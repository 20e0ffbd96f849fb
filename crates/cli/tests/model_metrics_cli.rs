//! `leukex evaluate --model RUN --data DIR`: faithfulness of the written maps and the
//! model parameter randomisation test, end to end on a fake run (closed-form ResNet18
//! weights, a hand-written model card) and a small synthetic data set.

mod common;

use std::path::Path;

use common::{fake_run, leukex, s, text};
use leukex_models::Arch;
use leukex_train::preprocessing_for;

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn faithfulness_and_randomisation_with_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let o = leukex(&["synth", "--out", s(&data), "--n", "4", "--size", "48"]);
    assert!(o.status.success(), "{}", text(&o));
    let run = tmp.path().join("r18run");
    fake_run(&run, preprocessing_for(Arch::ResNet18, 48));
    let maps = tmp.path().join("maps");
    let o = leukex(&[
        "explain",
        "--model",
        s(&run),
        "--input",
        s(&data),
        "--method",
        "gradient,grad-cam",
        "--target",
        "true",
        "--no-png",
        "--out",
        s(&maps),
    ]);
    assert!(o.status.success(), "{}", text(&o));

    let evaluate = |out: &Path| {
        leukex(&[
            "evaluate",
            "--maps",
            s(&maps),
            "--masks",
            s(&data.join("masks")),
            "--out",
            s(out),
            "--model",
            s(&run),
            "--data",
            s(&data),
            "--subset",
            "2",
            "--steps",
            "4",
            "--regions",
            "6",
            "--faithfulness",
            "region-perturbation,deletion,insertion,road",
            "--road-percentages",
            "20,60",
            "--sanity",
            "gradient,grad-cam",
            "--bootstrap",
            "50",
        ])
    };
    let out = tmp.path().join("eval");
    let o = evaluate(&out);
    assert!(o.status.success(), "{}", text(&o));

    // 2 images × (2 methods + the random map + the oracle map) × 4 metrics.
    let f = lines(&out.join("faithfulness.csv"));
    assert_eq!(f[0], "model,method,stem,target,metric,value");
    assert_eq!(f.len(), 1 + 2 * 4 * 4, "{f:?}");
    let mut methods = std::collections::BTreeSet::new();
    for row in &f[1..] {
        let cols: Vec<&str> = row.split(',').collect();
        assert_eq!(cols[0], "r18run");
        methods.insert(cols[1].to_string());
        let v: f64 = cols[5].parse().unwrap_or_else(|_| panic!("{row}"));
        assert!(v.is_finite(), "{row}");
    }
    assert_eq!(
        methods.into_iter().collect::<Vec<_>>(),
        ["@oracle", "@random", "grad-cam", "gradient"]
    );

    // MPRT: the original (1 per image), then ResNet18's six groups from the output side.
    let m = lines(&out.join("sanity.csv"));
    assert_eq!(m[0], "model,method,step,layer,stem,similarity");
    assert_eq!(m.len(), 1 + 2 * 7 * 2, "{m:?}");
    let layers: Vec<&str> = m[1..]
        .iter()
        .filter(|r| r.contains(",gradient,"))
        .map(|r| r.split(',').nth(3).unwrap())
        .collect();
    assert_eq!(layers[0], "original");
    assert_eq!(layers[2], "fc", "{layers:?}");
    let sims = |layer: &str| -> Vec<f64> {
        m[1..]
            .iter()
            .filter(|r| r.contains(",gradient,") && r.split(',').nth(3) == Some(layer))
            .map(|r| r.rsplit(',').next().unwrap().parse().unwrap())
            .collect()
    };
    assert!(sims("original").iter().all(|&v| v == 1.0));
    let last = m.last().unwrap().split(',').nth(3).unwrap().to_string();
    assert!(
        sims(&last).iter().all(|&v| v < 0.99),
        "the fully randomised model still gives the same gradient map: {:?}",
        sims(&last)
    );
    let md = std::fs::read_to_string(out.join("model_metrics.md")).unwrap();
    assert!(
        md.contains("region-perturbation") && md.contains("### gradient"),
        "{md}"
    );
    assert!(
        !md.contains("| undefined | undefined |"),
        "confidence intervals missing: {md}"
    );

    // Same seed, same numbers.
    let again = tmp.path().join("eval2");
    let o = evaluate(&again);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(f, lines(&again.join("faithfulness.csv")));
    assert_eq!(m, lines(&again.join("sanity.csv")));

    // A run whose maps are not there: the error names the folder.
    let other = tmp.path().join("other");
    fake_run(&other, preprocessing_for(Arch::ResNet18, 48));
    let o = leukex(&[
        "evaluate",
        "--maps",
        s(&maps),
        "--masks",
        s(&data.join("masks")),
        "--out",
        s(&tmp.path().join("eval3")),
        "--model",
        s(&other),
        "--data",
        s(&data),
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("no maps of this model"), "{}", text(&o));

    // An unknown MPRT method is refused before any work; an unreadable explain.json
    // is an error naming it, not a silent switch to the predicted class.
    let masks = data.join("masks");
    let bad = |extra: &[&str]| {
        let out = tmp.path().join("eval4");
        let mut args = vec![
            "evaluate",
            "--maps",
            s(&maps),
            "--masks",
            s(&masks),
            "--out",
            s(&out),
            "--model",
            s(&run),
            "--data",
            s(&data),
            "--subset",
            "1",
        ];
        args.extend_from_slice(extra);
        leukex(&args)
    };
    let o = bad(&["--sanity", "no-such-method"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--sanity"), "{}", text(&o));
    assert!(!tmp.path().join("eval4/faithfulness.csv").exists());
    std::fs::write(maps.join("r18run/explain.json"), "{").unwrap();
    let o = bad(&[]);
    assert!(!o.status.success());
    assert!(text(&o).contains("explain.json"), "{}", text(&o));
}

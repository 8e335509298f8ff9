//! Metrics on hand-computed examples: confusion matrix, precision, recall,
//! running mean, early stopping and the CSV log.

use kiln_runtime::metrics::{
    ConfusionMatrix, CsvLog, EarlyStopping, EpochRecord, Mode, RunningMean, Verdict, accuracy,
    argmax_rows, read_csv,
};

/// Checks a confusion matrix built from (truth, predicted) pairs against the
/// expected accuracy, precisions and recalls, and its printed table.
fn check(
    pairs: &[(usize, usize)],
    classes: usize,
    expect: (f64, &[Option<f64>], &[Option<f64>], &str),
) {
    let mut m = ConfusionMatrix::with_names(&["cat", "dog", "bird"][..classes]);
    for &(t, p) in pairs {
        assert!(m.add(t, p));
    }
    let (acc, precision, recall, table) = expect;
    assert!((m.accuracy() - acc).abs() < 1e-12, "{}", m.accuracy());
    for c in 0..classes {
        let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() < 1e-12,
            (a, b) => a == b,
        };
        assert!(
            close(m.precision(c), precision[c]),
            "precision {c}: {:?}",
            m.precision(c)
        );
        assert!(
            close(m.recall(c), recall[c]),
            "recall {c}: {:?}",
            m.recall(c)
        );
    }
    assert_eq!(m.to_string(), table);
}

#[test]
fn confusion_matrix_by_hand() {
    // True cat: 3 right, 1 as dog. True dog: 2 right, 1 as cat. True bird:
    // 1 as dog, none right. So the columns (predicted) hold cat 4, dog 4,
    // bird 0.
    let pairs = [
        (0, 0),
        (0, 0),
        (0, 0),
        (0, 1),
        (1, 1),
        (1, 1),
        (1, 0),
        (2, 1),
    ];
    check(
        &pairs,
        3,
        (
            5.0 / 8.0,
            &[Some(3.0 / 4.0), Some(2.0 / 4.0), None],
            &[Some(3.0 / 4.0), Some(2.0 / 3.0), Some(0.0)],
            " true\\pred  cat  dog bird precision    recall\n\
             \x20      cat    3    1    0     75.0%     75.0%\n\
             \x20      dog    1    2    0     50.0%     66.7%\n\
             \x20     bird    0    1    0         -      0.0%\n\
             accuracy 62.50% over 8 examples",
        ),
    );
    let mut m = ConfusionMatrix::new(2);
    assert!(!m.add(2, 0));
    m.add_scores(&[0.1, 0.9, 2.0, -1.0, 0.5, 0.5], &[1, 1, 0]);
    assert_eq!((m.count(1, 1), m.count(1, 0), m.count(0, 0)), (1, 1, 1));
}

#[test]
fn argmax_accuracy_and_running_mean() {
    assert_eq!(
        argmax_rows(&[1.0, 3.0, 2.0, f32::NAN, 0.0, -1.0], 3),
        [1, 1]
    );
    assert_eq!(accuracy(&[1, 2, 3, 4], &[1, 2, 0, 4]), 0.75);
    assert_eq!(accuracy(&[], &[]), 0.0);
    let mut m = RunningMean::new();
    m.add(2.0, 64.0);
    m.add(4.0, 32.0);
    assert!((m.mean() - (2.0 * 64.0 + 4.0 * 32.0) / 96.0).abs() < 1e-12);
    assert_eq!(m.weight(), 96.0);
}

#[test]
fn early_stopping_as_specified() {
    // Loss, patience 2, min delta 0.01: 0.995 is not an improvement on 1.0.
    let mut s = EarlyStopping::new(Mode::Min, 2, 0.01);
    let verdicts: Vec<Verdict> = [1.0, 0.9, 0.895, 0.85, 0.849, 0.86]
        .iter()
        .enumerate()
        .map(|(e, &v)| s.update(e, v))
        .collect();
    assert_eq!(
        verdicts,
        [
            Verdict::Improved,
            Verdict::Improved,
            Verdict::Wait { left: 1 },
            Verdict::Improved,
            Verdict::Wait { left: 1 },
            Verdict::Stop,
        ]
    );
    assert_eq!(s.best(), Some((3, 0.85)));
    // Accuracy, patience 1: the first non-improvement stops; NaN never counts.
    let mut s = EarlyStopping::new(Mode::Max, 1, 0.0);
    assert_eq!(s.update(0, f64::NAN), Verdict::Stop);
    assert_eq!(s.update(1, 0.5), Verdict::Improved);
    assert_eq!(s.update(2, 0.5), Verdict::Stop);
}

#[test]
fn csv_log_appends_with_one_header() {
    let dir = std::env::temp_dir().join(format!("kiln-metrics-test-{}", std::process::id()));
    let path = dir.join("run/metrics.csv");
    let _ = std::fs::remove_dir_all(&dir);
    let rec = |epoch, split: &str, loss| EpochRecord {
        epoch,
        split: split.into(),
        loss,
        accuracy: 0.5,
        lr: 0.01,
        images_per_s: 1234.5,
        seconds: 2.0,
    };
    let mut log = CsvLog::open(&path).unwrap();
    log.append(&rec(1, "train", 0.75)).unwrap();
    drop(log);
    // Reopening appends without a second header.
    let mut log = CsvLog::open(&path).unwrap();
    log.append(&rec(1, "val", 0.5)).unwrap();
    log.append(&rec(2, "odd,name", 0.25)).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "epoch,split,loss,accuracy,lr,images_per_s,seconds\n\
         1,train,0.75,0.5,0.01,1234.5,2\n\
         1,val,0.5,0.5,0.01,1234.5,2\n\
         2,\"odd,name\",0.25,0.5,0.01,1234.5,2\n"
    );
    assert_eq!(
        read_csv(&path).unwrap(),
        [
            rec(1, "train", 0.75),
            rec(1, "val", 0.5),
            rec(2, "odd,name", 0.25)
        ]
    );
    // A file of another format is refused, naming it.
    std::fs::write(&path, "a,b\n").unwrap();
    let e = CsvLog::open(&path).unwrap_err().to_string();
    assert!(e.contains("metrics.csv:1") && e.contains("`a,b`"), "{e}");
    std::fs::write(
        &path,
        "epoch,split,loss,accuracy,lr,images_per_s,seconds\n1,train,x,0,0,0,0\n",
    )
    .unwrap();
    let e = read_csv(&path).unwrap_err().to_string();
    assert!(
        e.contains("metrics.csv:2") && e.contains("`x` is not a number"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

//! The worker binary on real files: synthetic clips through FFmpeg, and inputs
//! that must fail cleanly with a non-zero exit and a reason.

use std::path::Path;
use std::process::{Command, Output};

fn worker(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_golftracker-worker"))
        .args(args)
        .output()
        .expect("worker runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn synth(dir: &Path, seed: &str) -> Output {
    worker(&[
        "synth",
        "--out",
        dir.to_str().unwrap(),
        "--seed",
        seed,
        "--count",
        "2",
        "--width",
        "320",
        "--height",
        "240",
        "--fps",
        "30",
        "--seconds",
        "3.5",
    ])
}

#[test]
fn synth_is_deterministic_and_writes_the_ground_truth() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for dir in [&a, &b] {
        let output = synth(dir.path(), "11");
        assert!(output.status.success(), "{}", stderr(&output));
    }
    for k in 0..2 {
        let clip = format!("swing-11-{k}.mp4");
        let truth = format!("swing-11-{k}.json");
        let (clip_a, clip_b) = (
            std::fs::read(a.path().join(&clip)).unwrap(),
            std::fs::read(b.path().join(&clip)).unwrap(),
        );
        assert!(clip_a.len() > 1000, "an encoded clip");
        assert_eq!(&clip_a[4..8], b"ftyp", "an MP4 file");
        assert_eq!(clip_a, clip_b, "same seed, same clip");
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(a.path().join(&truth)).unwrap()).unwrap();
        assert_eq!(json["frames"], 105);
        let events = json["events"].as_object().unwrap();
        assert_eq!(events.len(), 8);
        let frames: Vec<u64> = [
            "address",
            "toe_up",
            "mid_backswing",
            "top",
            "mid_downswing",
            "impact",
            "mid_follow_through",
            "finish",
        ]
        .iter()
        .map(|e| events[*e]["frame"].as_u64().unwrap())
        .collect();
        assert!(
            frames.windows(2).all(|w| w[0] <= w[1]),
            "events in swing order: {frames:?}"
        );
        assert!(frames[7] < 105);
    }
    let other = tempfile::tempdir().unwrap();
    assert!(synth(other.path(), "12").status.success());
    assert_ne!(
        std::fs::read(other.path().join("swing-12-0.json")).unwrap(),
        std::fs::read(a.path().join("swing-11-0.json")).unwrap()
    );
}

/// A 16-bit mono PCM WAV file: valid media, but no video.
fn write_wav(path: &Path) {
    let samples: Vec<u8> = (0..8000i16)
        .flat_map(|i| (i.wrapping_mul(97)).to_le_bytes())
        .collect();
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + samples.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&8000u32.to_le_bytes());
    wav.extend_from_slice(&16000u32.to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(samples.len() as u32).to_le_bytes());
    wav.extend_from_slice(&samples);
    std::fs::write(path, wav).unwrap();
}

#[test]
fn bad_inputs_fail_cleanly_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("empty.mp4"), b"").unwrap();
    std::fs::write(
        d.join("text.mp4"),
        b"this is not a video, just some text\n".repeat(50),
    )
    .unwrap();
    write_wav(&d.join("audio.wav"));
    // A real clip cut in half: the container index is gone.
    assert!(synth(d, "5").status.success());
    let clip = std::fs::read(d.join("swing-5-0.mp4")).unwrap();
    std::fs::write(d.join("truncated.mp4"), &clip[..clip.len() / 2]).unwrap();
    // A real clip with its video payload overwritten by garbage.
    let mut garbled = clip.clone();
    for (i, byte) in garbled.iter_mut().enumerate().skip(2000) {
        *byte = (i * 7919 % 251) as u8;
    }
    std::fs::write(d.join("garbled.mp4"), &garbled).unwrap();

    let cases = [
        ("empty.mp4", "InvalidVideo", "empty"),
        ("text.mp4", "InvalidVideo", "not a readable media file"),
        ("audio.wav", "InvalidVideo", "no video stream"),
        ("truncated.mp4", "InvalidVideo", ""),
        ("garbled.mp4", "", ""),
        ("missing.mp4", "InvalidVideo", "No such file"),
    ];
    for (name, code, reason) in cases {
        let json = d.join(format!("{name}.json"));
        let output = worker(&[
            "analyze",
            d.join(name).to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            "--model",
            d.join("no-model.safetensors").to_str().unwrap(),
        ]);
        let err = stderr(&output);
        assert!(!output.status.success(), "{name} must fail: {err}");
        assert!(err.contains(code) && err.contains(reason), "{name}: {err}");
        assert!(!json.exists(), "{name}: no report for a failed analysis");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
}

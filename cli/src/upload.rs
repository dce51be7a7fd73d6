//! Uploads a video to S3: one PUT for small files, a multipart upload (parts sent
//! concurrently) for large ones, with a byte progress bar either way.

use std::path::Path;

use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{Error, Result, s3_error};

/// Size of each multipart part; files up to this size go in one PUT. S3 wants at
/// least 5 MiB for all parts but the last.
pub const PART_SIZE: u64 = 8 * 1024 * 1024;
/// Parts in flight at once.
const CONCURRENT_PARTS: usize = 4;

/// Where the video goes.
pub struct Destination<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub content_type: &'a str,
}

/// A progress bar in bytes on stderr (hidden when stderr is not a terminal).
pub fn progress_bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "uploading {bar:30} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {eta}",
        )
        .expect("a valid progress template"),
    );
    bar
}

pub async fn upload(
    s3: &aws_sdk_s3::Client,
    path: &Path,
    to: &Destination<'_>,
    progress: &ProgressBar,
) -> Result<()> {
    let size = std::fs::metadata(path)
        .map_err(|source| Error::File {
            action: "read",
            path: path.to_owned(),
            source,
        })?
        .len();
    if size <= PART_SIZE {
        s3.put_object()
            .bucket(to.bucket)
            .key(to.key)
            .content_type(to.content_type)
            .body(part(path, 0, size).await?)
            .send()
            .await
            .map_err(s3_error("PutObject", to.bucket, to.key))?;
        progress.inc(size);
        return Ok(());
    }
    let upload_id = s3
        .create_multipart_upload()
        .bucket(to.bucket)
        .key(to.key)
        .content_type(to.content_type)
        .send()
        .await
        .map_err(s3_error("CreateMultipartUpload", to.bucket, to.key))?
        .upload_id
        .unwrap_or_default();
    match upload_parts(s3, path, size, to, &upload_id, progress).await {
        Ok(parts) => {
            s3.complete_multipart_upload()
                .bucket(to.bucket)
                .key(to.key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(s3_error("CompleteMultipartUpload", to.bucket, to.key))?;
            Ok(())
        }
        Err(error) => {
            // Best effort: the bucket's lifecycle rule aborts leftovers anyway.
            let _ = s3
                .abort_multipart_upload()
                .bucket(to.bucket)
                .key(to.key)
                .upload_id(&upload_id)
                .send()
                .await;
            Err(error)
        }
    }
}

async fn upload_parts(
    s3: &aws_sdk_s3::Client,
    path: &Path,
    size: u64,
    to: &Destination<'_>,
    upload_id: &str,
    progress: &ProgressBar,
) -> Result<Vec<CompletedPart>> {
    let mut parts: Vec<CompletedPart> = futures::stream::iter(part_ranges(size))
        .map(|(number, offset, len)| async move {
            let output = s3
                .upload_part()
                .bucket(to.bucket)
                .key(to.key)
                .upload_id(upload_id)
                .part_number(number)
                .body(part(path, offset, len).await?)
                .send()
                .await
                .map_err(s3_error("UploadPart", to.bucket, to.key))?;
            progress.inc(len);
            Ok::<_, Error>(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(output.e_tag)
                    .build(),
            )
        })
        .buffer_unordered(CONCURRENT_PARTS)
        .try_collect()
        .await?;
    parts.sort_by_key(|p| p.part_number);
    Ok(parts)
}

/// (part number from 1, offset, length) of each part of a file of `size` bytes.
fn part_ranges(size: u64) -> Vec<(i32, u64, u64)> {
    (0..size.div_ceil(PART_SIZE))
        .map(|i| {
            let offset = i * PART_SIZE;
            (i as i32 + 1, offset, PART_SIZE.min(size - offset))
        })
        .collect()
}

async fn part(path: &Path, offset: u64, len: u64) -> Result<ByteStream> {
    ByteStream::read_from()
        .path(path)
        .offset(offset)
        .length(Length::Exact(len))
        .build()
        .await
        .map_err(|e| Error::File {
            action: "read",
            path: path.to_owned(),
            source: std::io::Error::other(e),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_file_once() {
        assert_eq!(part_ranges(PART_SIZE), vec![(1, 0, PART_SIZE)]);
        assert_eq!(
            part_ranges(2 * PART_SIZE + 5),
            vec![
                (1, 0, PART_SIZE),
                (2, PART_SIZE, PART_SIZE),
                (3, 2 * PART_SIZE, 5)
            ]
        );
    }
}

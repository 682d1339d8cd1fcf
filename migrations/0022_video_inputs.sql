-- Image-to-video (issue 15): the `input_reference` image of a video job,
-- kept beside the job (not in `video_jobs`, whose rows lists and scans
-- read) until the job ends, so a fallback to another platform and a host
-- restart still have it. `data` is base64 (portable to PostgreSQL as text).
CREATE TABLE video_inputs (
    job_id TEXT PRIMARY KEY,
    media_type TEXT NOT NULL,
    data TEXT NOT NULL
);

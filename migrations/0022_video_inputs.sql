-- Image-to-video (issue 15): the `input_reference` image of a video job,
-- kept beside the job (not in `video_jobs`, whose rows lists and scans
-- read) until the job ends, so a fallback to another platform and a host
-- restart still have it. `data` is base64 (portable to PostgreSQL as text).
CREATE TABLE video_inputs (
    job_id TEXT PRIMARY KEY,
    media_type TEXT NOT NULL,
    data TEXT NOT NULL
);

-- Video discovery (issue 15): models a video platform lists that
-- catalog/videos.json does not know, found by the `discovery` scan. They
-- have no price (counted by the `models_without_price` alert metric) and
-- are not selected until an operator adds them to the catalog.
CREATE TABLE video_models (
    platform TEXT NOT NULL,
    model TEXT NOT NULL,
    found_at INTEGER NOT NULL,
    PRIMARY KEY (platform, model)
);

-- Video platform health (issue 15): `/api/health`, `/metrics` and the
-- alerts scan read the jobs ended in the last hour; this keeps that read
-- from scanning every job ever made.
CREATE INDEX video_jobs_completed ON video_jobs (completed_at);

-- Remix (`POST /v1/videos/{id}/remix`): the DOL id of the video remixed.
ALTER TABLE video_jobs ADD COLUMN remixed_from TEXT;

-- 0023_request_difficulty: how hard each chat-family prompt looked
-- (dol_core::optimize::selection::difficulty: 'easy', 'medium' or 'hard'),
-- recorded for requests that let DOL choose the model. The minute scan
-- `selection` learns the per tier × difficulty quality table the auto entry
-- tier reads from these rows (dol_core::optimize::auto_entry). NULL for
-- pinned models, embeddings, images, videos and rows written before it.
ALTER TABLE requests ADD COLUMN difficulty TEXT;

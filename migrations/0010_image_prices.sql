-- 0010_image_prices: prices per generated image (issue 15, POST /v1/images/generations).
--
-- A JSON object from a price key to micro-dollars per image. Keys are
-- "{size}/{quality}" (e.g. "1024x1024/hd"), "{size}" (any quality) or "*"
-- (any size and quality); the most specific key wins. A request whose size
-- and quality match no key has an unknown cost (recorded as unknown, never $0).
-- Text models keep '{}'.
ALTER TABLE models ADD COLUMN image_prices TEXT NOT NULL DEFAULT '{}';

CREATE TABLE swings (
    id BIGSERIAL PRIMARY KEY,
    golfer TEXT NOT NULL,
    club_speed_mph REAL NOT NULL CHECK (club_speed_mph > 0)
);

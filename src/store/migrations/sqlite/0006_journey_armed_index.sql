-- Armed timers counted by program and rule (the `hubsync_journey_timers_armed`
-- gauge, and the start-up check for timers of removed rules) walk this index
-- in order. Without it the GROUP BY sorted every armed timer, and SQLite
-- (temp_store = memory) did so in the daemon's memory: a million armed
-- timers cost ~140 MiB at start and ~300 MiB more per scrape at four
-- million, where timers are meant to live in the store, not in memory.
CREATE INDEX journey_timers_armed ON journey_timers (program, rule) WHERE status = 0;

DROP INDEX agents.idx_state_value_gin;
CREATE INDEX idx_state_value_gin ON agents.state USING gin (state_value);

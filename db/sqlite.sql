-- mflow state schema, version 2, for sqlite (generated from src/mflow/store/tables.py)

CREATE TABLE mf_attempts (
	run_id INTEGER NOT NULL, 
	task_id VARCHAR(255) NOT NULL, 
	attempt INTEGER NOT NULL, 
	state VARCHAR(20) NOT NULL, 
	started_at DATETIME NOT NULL, 
	ended_at DATETIME, 
	exit_code INTEGER, 
	message VARCHAR(2000), 
	pid INTEGER, 
	host VARCHAR(255), 
	log_path VARCHAR(1024), 
	details TEXT, 
	PRIMARY KEY (run_id, task_id, attempt)
);

CREATE TABLE mf_meta (
	name VARCHAR(64) NOT NULL, 
	val VARCHAR(255) NOT NULL, 
	PRIMARY KEY (name)
);

CREATE TABLE mf_runs (
	run_id INTEGER NOT NULL, 
	flow_path VARCHAR(1024) NOT NULL, 
	config_path VARCHAR(1024), 
	state VARCHAR(20) NOT NULL, 
	started_at DATETIME NOT NULL, 
	ended_at DATETIME, 
	heartbeat_at DATETIME, 
	pid INTEGER, 
	host VARCHAR(255), 
	task_count INTEGER NOT NULL, 
	parent_run_id INTEGER, 
	parent_task_id VARCHAR(255), 
	parent_attempt INTEGER, 
	resumed_from INTEGER, 
	scope VARCHAR(1000), 
	message VARCHAR(2000), 
	PRIMARY KEY (run_id)
);

CREATE INDEX mf_runs_parent ON mf_runs (parent_run_id);

CREATE INDEX mf_runs_state ON mf_runs (state);

CREATE TABLE mf_tasks (
	run_id INTEGER NOT NULL, 
	task_id VARCHAR(255) NOT NULL, 
	position INTEGER NOT NULL, 
	task_type VARCHAR(64) NOT NULL, 
	state VARCHAR(20) NOT NULL, 
	attempts INTEGER NOT NULL, 
	max_attempts INTEGER NOT NULL, 
	updated_at DATETIME NOT NULL, 
	message VARCHAR(2000), 
	depends_on TEXT, 
	digest VARCHAR(64), 
	PRIMARY KEY (run_id, task_id)
);

INSERT INTO mf_meta (name, val) VALUES ('schema_version', '2');

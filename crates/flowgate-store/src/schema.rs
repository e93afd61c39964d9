//! Diesel table definitions, shared by both backends (see `migrations/`).

diesel::table! {
    flows (name) {
        name -> Text,
        disabled -> Integer,
        live_version -> Nullable<Integer>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    flow_versions (flow, version) {
        flow -> Text,
        version -> Integer,
        status -> Text,
        sha256 -> Text,
        files -> Text,
        created_at -> BigInt,
        published_at -> Nullable<BigInt>,
        retired_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    runs (id) {
        id -> Text,
        flow -> Text,
        version -> Integer,
        trigger_kind -> Text,
        status -> Text,
        attempt -> Integer,
        max_attempts -> Integer,
        input -> Text,
        available_at -> BigInt,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<BigInt>,
        started_at -> Nullable<BigInt>,
        finished_at -> Nullable<BigInt>,
        duration_ms -> Nullable<BigInt>,
        response_status -> Nullable<Integer>,
        response -> Nullable<Text>,
        error -> Nullable<Text>,
        scheduled_at -> Nullable<BigInt>,
        event_id -> Nullable<Text>,
        idempotency_key -> Nullable<Text>,
        created_at -> BigInt,
        http_calls -> Nullable<Text>,
    }
}

diesel::table! {
    run_logs (run_id, seq) {
        run_id -> Text,
        seq -> Integer,
        time -> BigInt,
        level -> Text,
        message -> Text,
        attempt -> Integer,
    }
}

diesel::table! {
    run_attempts (run_id, attempt) {
        run_id -> Text,
        attempt -> Integer,
        owner -> Text,
        started_at -> BigInt,
        finished_at -> Nullable<BigInt>,
        outcome -> Nullable<Text>,
        error -> Nullable<Text>,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        email -> Text,
        email_lower -> Text,
        display_name -> Nullable<Text>,
        status -> Text,
        attributes -> Text,
        external_ids -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    user_external_ids (system, external_id, user_id) {
        system -> Text,
        external_id -> Text,
        user_id -> Text,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Text,
        name -> Text,
        hash -> Text,
        scopes -> Text,
        created_at -> BigInt,
        expires_at -> Nullable<BigInt>,
        last_used_at -> Nullable<BigInt>,
        revoked -> Integer,
    }
}

diesel::table! {
    secrets (name) {
        name -> Text,
        nonce -> Text,
        ciphertext -> Text,
        updated_at -> BigInt,
    }
}

diesel::table! {
    kv (flow, key) {
        flow -> Text,
        key -> Text,
        value -> Text,
        expires_at -> Nullable<BigInt>,
        updated_at -> BigInt,
    }
}

diesel::table! {
    events (id) {
        id -> Text,
        event_type -> Text,
        source -> Text,
        time -> BigInt,
        data -> Text,
        external_id -> Nullable<Text>,
        created_at -> BigInt,
        dispatched_at -> Nullable<BigInt>,
        depth -> BigInt,
        chain_id -> Nullable<Text>,
    }
}

diesel::table! {
    idempotency (scope_key) {
        scope_key -> Text,
        request_hash -> Text,
        state -> Text,
        response -> Nullable<Text>,
        created_at -> BigInt,
        expires_at -> BigInt,
        owner -> Nullable<Text>,
    }
}

diesel::table! {
    schedule_ticks (flow, due_at) {
        flow -> Text,
        due_at -> BigInt,
        state -> Text,
        run_id -> Nullable<Text>,
        created_at -> BigInt,
        node_id -> Nullable<Text>,
    }
}

diesel::table! {
    audit (id) {
        id -> Text,
        time -> BigInt,
        request_id -> Text,
        caller -> Nullable<Text>,
        flow -> Nullable<Text>,
        version -> Nullable<Integer>,
        method -> Text,
        path -> Text,
        status -> Integer,
        duration_ms -> BigInt,
        idempotency_key -> Nullable<Text>,
    }
}

diesel::table! {
    console_sessions (id_hash) {
        id_hash -> Text,
        key_id -> Text,
        csrf_token -> Text,
        created_at -> BigInt,
        last_seen_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    nodes (id) {
        id -> Text,
        version -> Text,
        started_at -> BigInt,
        last_heartbeat -> BigInt,
        stopped_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    cluster_changes (id) {
        id -> Integer,
        seq -> BigInt,
    }
}

diesel::table! {
    rate_windows (flow, caller, window_start) {
        flow -> Text,
        caller -> Text,
        window_start -> BigInt,
        used -> BigInt,
    }
}

diesel::joinable!(flow_versions -> flows (flow));
diesel::joinable!(run_logs -> runs (run_id));
diesel::joinable!(run_attempts -> runs (run_id));
diesel::joinable!(user_external_ids -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    flows,
    flow_versions,
    runs,
    run_logs,
    run_attempts,
    users,
    user_external_ids,
    api_keys,
    secrets,
    kv,
    events,
    idempotency,
    schedule_ticks,
    audit,
    console_sessions,
    nodes,
    cluster_changes,
    rate_windows,
);

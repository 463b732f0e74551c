/**
 * `limits.maxTopicBytes` and `limits.maxTopicLevels`, one check for what a client
 * publishes to and what it subscribes to.
 */

export interface TopicLimits {
  readonly maxTopicBytes: number
  readonly maxTopicLevels: number
}

/** Which limit a topic is over, and by how much, for the refusal. */
export interface TopicOverLimit {
  readonly limit: 'topic_bytes' | 'topic_levels'
  readonly detail: string
}

/**
 * Whether `topic` is long enough to be over a limit: a UTF-8 character is at most 3
 * bytes per UTF-16 unit, and n levels take n − 1 characters. Most topics are short
 * enough to skip the counting.
 */
export function mayBeOverLimit (topic: string, limits: TopicLimits): boolean {
  return topic.length * 3 > limits.maxTopicBytes || topic.length >= limits.maxTopicLevels
}

/** The limit a topic or filter is over (bytes first, then levels), or `undefined` within them. The caller counts it. */
export function topicOverLimit (topic: string, limits: TopicLimits): TopicOverLimit | undefined {
  if (!mayBeOverLimit(topic, limits)) return undefined
  const bytes = Buffer.byteLength(topic)
  if (bytes > limits.maxTopicBytes) {
    return { limit: 'topic_bytes', detail: `a topic of ${bytes} bytes is over limits.maxTopicBytes (${limits.maxTopicBytes})` }
  }
  const levels = topic.split('/').length
  if (levels > limits.maxTopicLevels) {
    return { limit: 'topic_levels', detail: `a topic of ${levels} levels is over limits.maxTopicLevels (${limits.maxTopicLevels})` }
  }
  return undefined
}

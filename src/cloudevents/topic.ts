/** CloudEvent `type` ⇄ MQTT topic: `albergue.v1.booking.reserved` ⇄ `albergue/v1/booking/reserved`. */
export function typeToTopic (type: string): string {
  return type.replaceAll('.', '/')
}

/** MQTT topic → the CloudEvent `type` published on it. */
export function topicToType (topic: string): string {
  return topic.replaceAll('/', '.')
}

/** Whether `type` maps to `topic` (`typeToTopic(type) === topic`), compared in place: it runs on every event. */
export function typeMatchesTopic (type: string, topic: string): boolean {
  if (type.length !== topic.length) return false
  for (let i = 0; i < type.length; i++) {
    const code = type.charCodeAt(i)
    if ((code === 46 /* . */ ? 47 /* / */ : code) !== topic.charCodeAt(i)) return false
  }
  return true
}

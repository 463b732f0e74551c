/** CloudEvent `type` ⇄ MQTT topic: `albergue.v1.booking.reserved` ⇄ `albergue/v1/booking/reserved`. */
export function typeToTopic (type: string): string {
  return type.replaceAll('.', '/')
}

/** MQTT topic → the CloudEvent `type` published on it. */
export function topicToType (topic: string): string {
  return topic.replaceAll('/', '.')
}

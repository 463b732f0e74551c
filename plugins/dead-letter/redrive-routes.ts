import type { FastifyPluginAsync } from 'fastify'
import { errorBody } from '../../src/core/index.js'
import { RedriveBodyReader } from './redrive-filter.js'
import type { Redrive } from './redrive.js'

/**
 * `POST /api/dlq/replay` (a dry run: `200 { matched, sample }`; else a job: `202 { job }`,
 * `409` naming the job that runs), `GET /api/dlq/replay/:jobId` (its progress),
 * `POST /api/dlq/replay/:jobId/resume` and `DELETE /api/dlq/replay/:jobId` (stop; resumable).
 */
export const redriveRoutes: FastifyPluginAsync<{ readonly redrive: Redrive }> = async function redriveRoutes (app, { redrive }) {
  const reader = new RedriveBodyReader()
  const notFound = (id: string): ReturnType<typeof errorBody> => errorBody('not_found', `no redrive job ${JSON.stringify(id)}`)

  app.post('/api/dlq/replay', async (req, reply) => {
    const request = reader.read(req.body)
    if (request.dryRun) return await redrive.preview(request)
    const { job, started } = await redrive.start(request)
    if (!started) return await reply.code(409).send(errorBody('conflict', `redrive job ${job.id} is running on node ${job.node}; stop it (DELETE /api/dlq/replay/${job.id}) or wait for it`))
    return await reply.code(202).send({ job })
  })

  app.get<{ Params: { jobId: string } }>('/api/dlq/replay/:jobId', async (req, reply) => {
    const job = await redrive.get(req.params.jobId)
    return job === undefined ? await reply.code(404).send(notFound(req.params.jobId)) : { job }
  })

  app.post<{ Params: { jobId: string } }>('/api/dlq/replay/:jobId/resume', async (req, reply) => {
    const resumed = await redrive.resume(req.params.jobId)
    if (typeof resumed !== 'string') return await reply.code(202).send({ job: resumed })
    return await reply.code(resumed.startsWith('no redrive job') ? 404 : 409).send(errorBody(resumed.startsWith('no redrive job') ? 'not_found' : 'conflict', resumed))
  })

  app.delete<{ Params: { jobId: string } }>('/api/dlq/replay/:jobId', async (req, reply) => {
    const job = await redrive.stop(req.params.jobId)
    return job === undefined ? await reply.code(404).send(notFound(req.params.jobId)) : { job }
  })
}
